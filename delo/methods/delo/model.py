"""``DeLoModel``: a frozen ViLT with routed factor pools at the target linears, per-task heads and a Task-Key
Memory (method.md §1-§7).

Forward modes:

- ``train``: every sample uses task k (default: the latest); updates key k from this pass's TKM query.
- ``proxy``: task k, swapped routing (text pools by q_v, vision pools by q_t) unless ``guide`` names another
  routing per sample; no key update (L_con's pass).
- ``agnostic``: each sample's task k* comes from the Task-Key Memory; ``batch["task"]`` is never read.
- ``oracle``: each sample's true task from ``batch["task"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import ViltModel

from delo.config import ModelConfig
from delo.methods.base import ContinualMethod, Prediction, load_state_tensors
from delo.methods.delo.layer import DeLoLinear, group_by_input
from delo.vilt.context import MODES, ContextSlot, RoutingContext, RoutingStats, guide_index, use_context
from delo.vilt.inject import inject
from delo.vilt.key_site import KeySite
from delo.vilt.task_keys import TaskKeyMemory


@dataclass
class ModelOutput:
    scores: Tensor  # (B, C_total) logits in the global columns of each sample's task head, -inf elsewhere
    task: Tensor  # (B,) long: the task whose pools and head served each sample
    pooled: Tensor  # (B, d) ViLT pooler output
    queries: list[Tensor]  # raw [q_v, q_t] (B, 2, d) per query site (one per layer for q/k/v)
    query_sites: list[str]  # the names of those query sites
    # TKM query (train and agnostic modes): u (B, d) for shared keys, raw [q_v, q_t] (B, 2, d) per modality
    key_query: Tensor | None
    rows: dict[str, Tensor] | None = None  # lead site -> (2 [A, B], G, P, E) entries gathered (record_rows)
    # lead site -> (a_idx, b_idx), each (B, G, 2, r) long (record_selections)
    selections: dict[str, tuple[Tensor, Tensor]] | None = None


def _checkpointing_on(vilt: nn.Module) -> bool:
    """Gradient checkpointing would re-run ViLT layers after the routing context has closed."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in vilt.modules())


class DeLoModel(ContinualMethod):
    frozen_after_task = True
    """Task k's pools, key and head never change after task k+1 begins, so a sample routed to task k gets the
    same prediction in every later evaluation (the evaluator's reuse relies on this)."""

    def __init__(self, vilt: ViltModel, cfg: ModelConfig, multilabel: bool) -> None:
        if _checkpointing_on(vilt):
            raise ValueError(
                "gradient checkpointing re-runs ViLT layers after the routing context closed; disable it"
            )
        super().__init__(vilt, multilabel)  # freezes vilt before the pools are injected
        self.cfg = cfg
        self._slot = ContextSlot()
        self.tkm = TaskKeyMemory(self.hidden, cfg.tkm_keys)
        # checks model.tkm_layer before anything is injected
        self._key_site = KeySite(vilt, self._slot, self.tkm, cfg.tkm_layer, cfg.delta_scope == "own_tokens")
        self.site_names = inject(
            vilt, cfg.targets, lambda name, linear: DeLoLinear(linear, name, self._slot, cfg)
        )
        self._sites: list[DeLoLinear] = [vilt.get_submodule(n) for n in self.site_names]
        if cfg.variant != "delo_lora":
            group_by_input(self._sites)
        self.heads = nn.ModuleList()
        self.register_buffer("_column_task", torch.zeros(0, dtype=torch.long), persistent=False)
        self._stats: RoutingStats | None = None

    # ------------------------------------------------------------------------------------------------------
    # Tasks, parameters, checkpoints

    @property
    def sites(self) -> list[DeLoLinear]:
        """The wrapped linears, in the order of ``site_names`` (sorted dotted names)."""
        return list(self._sites)

    @property
    def task_keys(self) -> Tensor:
        """Task-Key Memory buffer, (T_learned, d) shared or (T_learned, 2, d) per modality ([key^v, key^t]);
        key k also travels inside ``task_state(k)`` as ``task_key``."""
        return self.tkm.keys

    def begin_task(self, k: int, num_classes: int, offset: int) -> None:
        """Create task k's pools, key and head; freeze every earlier task. Tasks begin in order 0, 1, ..."""
        self._register_task(k, num_classes, offset)  # checks the order and offset, records the classes
        for j in range(k):
            for p in self.task_parameters(j):
                p.requires_grad_(False)
        for site in self._sites:
            site.add_task()
        weight = self.vilt.pooler.dense.weight
        self.heads.append(nn.Linear(self.hidden, num_classes).to(device=weight.device, dtype=weight.dtype))
        self.tkm.add_task()
        column = torch.full((num_classes,), k, dtype=torch.long, device=weight.device)
        self._column_task = torch.cat([self._column_task, column])

    def _task_modules(self, k: int) -> list[nn.Module]:
        if not 0 <= k < self.num_tasks:
            raise IndexError(f"task {k} has not begun ({self.num_tasks} tasks so far)")
        return [site.pools[k] for site in self._sites] + [self.heads[k]]

    def task_parameters(self, k: int) -> list[nn.Parameter]:
        """Task k's pools (every site) and head: exactly what the optimiser of task k gets."""
        return [p for module in self._task_modules(k) for p in module.parameters()]

    def task_parameter_groups(self, k: int) -> dict[str, list[nn.Parameter]]:
        """``task_parameters(k)`` split by role: ``factors`` (A, B, LoRA A/B and the head) and ``routers``
        (W_A, W_B, their biases, M), so that routers can get their own learning rate."""
        routers = [p for site in self._sites for p in getattr(site.pools[k], "router_parameters", list)()]
        chosen = {id(p) for p in routers}
        return {"factors": [p for p in self.task_parameters(k) if id(p) not in chosen], "routers": routers}

    def _task_tensors(self, k: int) -> dict[str, Tensor]:
        tensors = {
            f"sites.{site.site}.{name}": p
            for site in self._sites
            for name, p in site.pools[k].named_parameters()
        }
        tensors.update({f"head.{name}": p for name, p in self.heads[k].named_parameters()})
        tensors["task_key"] = self.tkm.keys[k]
        return tensors

    def task_state(self, k: int) -> dict[str, Tensor]:
        """Copies of task k's tensors (pools, head, and its Task-Key Memory key as ``task_key``)."""
        self._task_modules(k)
        return {name: t.detach().clone() for name, t in self._task_tensors(k).items()}

    @torch.no_grad()
    def load_task_state(self, k: int, state: dict[str, Tensor]) -> None:
        """Load ``task_state(k)`` output into a model where task k has begun; names and shapes must match."""
        self._task_modules(k)
        live = self._task_tensors(k)
        load_state_tensors(k, live, state)

    def head_parameters(self, k: int) -> int:
        return sum(p.numel() for p in self.heads[k].parameters())

    def training_loss(self, batch: dict, task: int, loss_cfg, record_rows: bool = False):
        """``delo.methods.delo.loss.compute_loss`` (L_cls + lambda1 L_align + lambda2 L_con); a ``LossOutput``, whose
        ``parts`` are cls / align / con."""
        from delo.methods.delo.loss import compute_loss  # delo.methods.delo.loss imports this module

        return compute_loss(self, batch, task, loss_cfg, record_rows=record_rows)

    # ------------------------------------------------------------------------------------------------------
    # Routing statistics

    def enable_routing_stats(self, enabled: bool = True) -> None:
        """Accumulate selection counts and cos(q_v, q_t) over forwards (not proxy passes) while enabled."""
        self._stats = RoutingStats() if enabled else None

    def routing_stats(self) -> dict[str, dict]:
        """Pop the accumulated statistics (see ``RoutingStats.pop``); empty dicts when disabled."""
        if self._stats is None:
            return {"selection": {}, "query_cos": {}}
        return self._stats.pop()

    # ------------------------------------------------------------------------------------------------------
    # Forward

    def forward(
        self,
        batch: dict,
        mode: str = "train",
        task: int | None = None,
        *,
        guide: Tensor | None = None,
        record_rows: bool = False,
        keep_rows: dict[str, Tensor] | None = None,
        record_selections: bool = False,
    ) -> ModelOutput:
        """One forward. Proxy mode only: ``guide`` (B, 2) overrides which raw query (0 = q_v, 1 = q_t) routes
        the vision and the text pool (default: swapped); ``keep_rows`` (a train pass's ``rows``) detaches every
        other pool entry. ``record_rows`` (train / proxy) returns the entries this pass gathered in ``rows``;
        ``record_selections`` returns every sample's selected indices in ``selections``."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if self.num_tasks == 0:
            raise RuntimeError("no task has begun: call begin_task(0, ...) first")
        if _checkpointing_on(self.vilt):
            raise RuntimeError("gradient checkpointing was turned on after construction; DeLo needs it off")
        ctx = self._new_context(batch, mode)
        if (guide is not None or keep_rows is not None) and mode != "proxy":
            raise ValueError("guide and keep_rows apply to the proxy pass only")
        if guide is not None:
            ctx.guide = guide.to(ctx.missing.device, torch.long)
        if record_rows and mode not in ("train", "proxy"):
            raise ValueError("record_rows applies to single-task passes (train, proxy) only")
        ctx.row_usage = {} if record_rows else None
        ctx.row_keep = keep_rows
        ctx.selections = {} if record_selections else None
        if mode in ("train", "proxy"):
            task = self.num_tasks - 1 if task is None else task
            self._task_modules(task)
            ctx.set_task(torch.full_like(ctx.missing, task), task, self.num_tasks)
        elif mode == "oracle":
            ctx.set_task(batch["task"].to(ctx.missing.device, torch.long), None, self.num_tasks)
        if mode in ("train", "agnostic") and self.cfg.tkm_layer > 0:
            # The task must be known before the first expert, which sits below a deeper TKM site.
            ctx.key_query = self._key_query_pass(batch)
            if mode == "agnostic":
                ctx.set_task(self.tkm.infer(ctx.key_query, ctx.missing), None, self.num_tasks)
        with use_context(self._slot, ctx):
            out = self._run_vilt(batch)
        if mode == "train":
            self.tkm.update(task, ctx.key_query, ctx.missing, self.cfg.beta)
        return ModelOutput(
            scores=self._scores(out.pooler_output, ctx),
            task=ctx.task,
            pooled=out.pooler_output,
            queries=ctx.queries,
            query_sites=ctx.query_sites,
            key_query=ctx.key_query,
            rows=ctx.row_usage,
            selections=ctx.selections,
        )

    @torch.no_grad()
    def predict(self, batch: dict, oracle: bool = False) -> Prediction:
        out = self(batch, "oracle" if oracle else "agnostic")
        return Prediction(task=out.task, scores=out.scores)

    def _new_context(self, batch: dict, mode: str) -> RoutingContext:
        missing = batch["missing"].long()
        return RoutingContext(
            missing=missing,
            text_len=batch["input_ids"].shape[1],
            mode=mode,
            guide=guide_index(missing, mode, self.cfg.variant),
            stats=self._stats,
        )

    def _run_vilt(self, batch: dict):
        return self.vilt(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
            pixel_values=batch["pixel_values"],
            pixel_mask=batch["pixel_mask"],
        )

    @torch.no_grad()
    def infer_task(self, batch: dict) -> Tensor:
        """(B,) the task the Task-Key Memory assigns each sample, from the expert-free pass up to the key site
        (the same query and scores an agnostic forward routes with)."""
        query = self._key_query_pass(batch)
        return self.tkm.infer(query, batch["missing"].long().to(query.device))

    def _key_query_pass(self, batch: dict) -> Tensor:
        """Expert-free forward up to the TKM site; returns the TKM query."""
        return self._key_site.query_pass(self._new_context(batch, "keys"), lambda: self._run_vilt(batch))

    def _scores(self, pooled: Tensor, ctx: RoutingContext) -> Tensor:
        total = sum(self.num_classes)
        if ctx.uniform_task is not None:
            k = ctx.uniform_task
            logits = self.heads[k](pooled)  # (B, C_k); other heads never enter
            return F.pad(
                logits, (self.offsets[k], total - self.offsets[k] - self.num_classes[k]), value=-torch.inf
            )
        logits = torch.cat([head(pooled) for head in self.heads], dim=1)  # (B, C_total), contiguous per task
        return logits.masked_fill(self._column_task[None, :] != ctx.task[:, None], -torch.inf)
