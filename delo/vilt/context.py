"""Per-forward routing context (method.md §3, §4).

Everything a wrapped linear needs besides its input lives in one :class:`RoutingContext`, created by
a method's forward (DeLo, MoRA) and installed in the model's :class:`ContextSlot` by :func:`use_context`, which always
clears it. A wrapped linear called with an empty slot raises: there is no silent fallback to the frozen layer
(the failure of the authors' release, method.md §14.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

MODES = ("train", "proxy", "agnostic", "task_aware")
"""Public forward modes; the model also uses the internal mode ``keys`` (expert-free pass up to the TKM site)."""


def guide_index(missing: Tensor, mode: str, variant: str) -> Tensor:
    """(B,) missing codes -> (B, 2) long: which raw query (0 = q_v, 1 = q_t) routes the vision pool (column 0)
    and the text pool (column 1).

    Cross-modal guide (method.md §4): a missing modality borrows the present one's query, so text missing
    (code 1) gives (q_v, q_v) and image missing (code 2) gives (q_t, q_t). ``no_guide`` keeps (q_v, q_t); the
    proxy pass of L_con swaps them to (q_t, q_v). Built on the codes' device, without a host table.
    """
    if mode == "proxy":
        vision, text = torch.ones_like(missing), torch.zeros_like(missing)
    elif variant == "no_guide":
        vision, text = torch.zeros_like(missing), torch.ones_like(missing)
    else:
        vision, text = (missing == 2).long(), (missing != 1).long()
    return torch.stack([vision, text], dim=1)  # (B, 2)


@dataclass(eq=False)
class QuerySite:
    """Queries of one distinct linear input (one per layer for q/k/v, which share the LayerNorm-ed input)."""

    raw: Tensor  # (B, 2, d): [q_v, q_t], masked means over image / text tokens
    guided: Tensor  # (B, 2, d): [q̂ for the vision pool, q̂ for the text pool]
    collected: bool = False


class RoutingStats:
    """Routing statistics summed over forwards while enabled (paper Fig. 4b and Fig. 5); kept on the device."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.selection: dict[str, Tensor] = {}  # site -> (T, 2 [A, B], 2 [v, t], E) selection counts
        self.cos_sum: dict[str, Tensor] = {}  # query site -> sum of cos(q_v, q_t) over complete samples
        self.cos_count: dict[str, Tensor] = {}

    def add_selection(self, site: str, first_task: int, counts: Tensor) -> None:
        """counts: (T_stacked, 2, 2, E) for tasks first_task .. first_task + T_stacked - 1."""
        last = first_task + counts.shape[0]
        table = self.selection.get(site)
        if table is None or table.shape[0] < last:
            grown = counts.new_zeros((last, *counts.shape[1:]))
            if table is not None:
                grown[: table.shape[0]] = table
            table = self.selection[site] = grown
        table[first_task:last] += counts

    def add_query_cos(self, site: str, raw: Tensor, complete: Tensor) -> None:
        raw = raw.detach().float()
        cos = torch.nn.functional.cosine_similarity(raw[:, 0], raw[:, 1], dim=-1)  # (B,)
        weight = complete.to(cos.dtype)
        self.cos_sum[site] = self.cos_sum.get(site, 0) + (cos * weight).sum()
        self.cos_count[site] = self.cos_count.get(site, 0) + weight.sum()

    def pop(self) -> dict[str, dict]:
        """Return ``{"selection": {site: LongTensor (T, 2, 2, E)}, "query_cos": {site: float}}`` (CPU) and reset.

        ``query_cos`` has no entry for a site that saw no complete sample.
        """
        out = {
            "selection": {k: v.detach().long().cpu() for k, v in sorted(self.selection.items())},
            "query_cos": {
                k: float(self.cos_sum[k] / self.cos_count[k])
                for k in sorted(self.cos_sum)
                if float(self.cos_count[k]) > 0
            },
        }
        self.reset()
        return out


@dataclass(eq=False)
class RoutingContext:
    """State of one forward pass. ``task`` is None until the Task-Key Memory resolves it (agnostic mode)."""

    missing: Tensor  # (B,) long: 0 complete, 1 text missing, 2 image missing
    text_len: int  # L_t: the first L_t tokens are text, then image [CLS] and patches
    mode: str  # train | proxy | agnostic | task_aware | keys
    guide: Tensor  # (B, 2) long, from guide_index
    task: Tensor | None = None  # (B,) long task whose pools and head serve each sample
    uniform_task: int | None = None  # set when every sample uses the same task (train / proxy)
    pool_tasks: range = range(0)  # tasks whose pools the linears stack (one when uniform, else 0..t-1)
    pool_index: Tensor | None = None  # (B,) long: each sample's position in pool_tasks
    key_query: Tensor | None = None  # TKM query: u (B, d) shared, [q_v, q_t] (B, 2, d) per modality
    stop_at_key_site: bool = False  # the ``keys`` pass ends at the TKM site
    text_mask: Tensor | None = None  # (B, L_t) from the batch (set by the embeddings hook)
    # (B, S - L_t): image [CLS] + valid patches, in this forward's (random) patch order
    image_mask: Tensor | None = None
    token_weights: Tensor | None = None  # (B, S, 2): normalised masks whose contraction gives [q_v, q_t]
    scope: Tensor | None = None  # (1, S, 2, 1) for delta_scope own_tokens: vision slots on image tokens only
    queries: list[Tensor] = field(default_factory=list)  # raw (B, 2, d) per query site, in call order
    query_sites: list[str] = field(default_factory=list)
    stats: RoutingStats | None = None
    # Lead site of a site group -> (2 [A, B], G, P, E) bool: entries this pass gathered (when recording), and
    # the entries a proxy pass may train (``loss.con_grad=main_rows``; None: all).
    row_usage: dict[str, Tensor] | None = None
    row_keep: dict[str, Tensor] | None = None
    # Lead site of a site group -> (a_idx, b_idx), each (B, G, 2, r): per-sample selections (when recording)
    selections: dict[str, tuple[Tensor, Tensor]] | None = None
    # id(SiteGroup) -> (its input, the per-site deltas not yet taken by their linears)
    group_deltas: dict = field(default_factory=dict)
    _cache_input: Tensor | None = None
    _cache: QuerySite | None = None

    @property
    def records(self) -> bool:
        """Statistics describe the true routing only: never the proxy or the expert-free pass."""
        return self.stats is not None and self.mode not in ("proxy", "keys")

    def set_task(self, task: Tensor, uniform: int | None, num_tasks: int) -> None:
        self.task = task
        self.uniform_task = uniform
        if uniform is None:
            self.pool_tasks = range(num_tasks)
            self.pool_index = task
        else:
            self.pool_tasks = range(uniform, uniform + 1)
            self.pool_index = torch.zeros_like(task)

    def set_masks(self, token_mask: Tensor, own_tokens: bool) -> None:
        """token_mask: (B, S) combined mask the ViLT embeddings return ([attention_mask, image mask])."""
        mask = token_mask.float()
        self.text_mask, self.image_mask = mask[:, : self.text_len], mask[:, self.text_len :]
        is_image = torch.zeros_like(mask)
        is_image[:, self.text_len :] = 1.0
        per_modality = torch.stack([mask * is_image, mask * (1.0 - is_image)], dim=-1)  # (B, S, 2)
        # A sample always has its text [CLS] and its image [CLS], so neither count is zero.
        self.token_weights = per_modality / per_modality.sum(dim=1, keepdim=True)  # (B, S, 2)
        if own_tokens:
            slots = torch.stack([is_image[0], 1.0 - is_image[0]], dim=-1)  # (S, 2): vision, text slot on
            self.scope = slots[None, :, :, None]  # (1, S, 2, 1), broadcast over batch and rank

    def queries_for(self, x: Tensor, site: str | None) -> QuerySite:
        """Queries of the linear input ``x`` (B, S, d), computed once per distinct input.

        ``site`` names the adapted linear asking; the first one to ask collects the raw queries for the
        alignment loss and statistics. The TKM hook asks with ``site=None`` (it is not an adapted linear).
        """
        if self._cache_input is not x:
            if self.token_weights is None:
                raise RuntimeError("routing context has no token masks: the ViLT embeddings hook did not run")
            raw = torch.einsum("bsm,bsd->bmd", self.token_weights.to(x.dtype), x)  # (B, 2, d)
            index = self.guide[:, :, None].expand(-1, -1, raw.shape[-1])  # (B, 2, d)
            guided = raw.gather(1, index)  # (B, 2, d): row m is the raw query chosen for pool m
            self._cache_input, self._cache = x, QuerySite(raw, guided)
        entry = self._cache
        if site is not None and not entry.collected:
            entry.collected = True
            self.queries.append(entry.raw)
            self.query_sites.append(site)
            if self.records:
                self.stats.add_query_cos(site, entry.raw, self.missing == 0)
        return entry


class ContextSlot:
    """Holds the active routing context of one model; shared by its wrapped linears (not a module)."""

    def __init__(self) -> None:
        self.current: RoutingContext | None = None

    def get(self) -> RoutingContext:
        if self.current is None:
            raise RuntimeError(
                "a DeLo-wrapped linear was called outside a routing context; call the model through "
                "DeLoModel.forward (or predict), not the ViLT backbone directly"
            )
        return self.current


@contextmanager
def use_context(slot: ContextSlot, ctx: RoutingContext) -> Iterator[RoutingContext]:
    """Install ``ctx`` for the duration of one forward; always cleared, also when the forward raises."""
    if slot.current is not None:
        raise RuntimeError("a routing context is already active (nested DeLo forwards are not supported)")
    slot.current = ctx
    try:
        yield ctx
    finally:
        slot.current = None
