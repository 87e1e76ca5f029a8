"""``DeLoModel``: a frozen ViLT with routed factor pools at the target linears, per-task heads and a Task-Key
Memory (method.md §1-§7).

Forward modes:

- ``train``: every sample uses task k (default: the latest); updates key k from this pass's TKM query.
- ``proxy``: task k, swapped routing (text pools by q_v, vision pools by q_t) unless ``guide`` names another
  routing per sample; no key update (L_con's pass).
- ``agnostic``: each sample's task k* comes from the Task-Key Memory; ``batch["task"]`` is never read.
- ``task_aware``: each sample's true task from ``batch["task"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import ViltModel

from delo.config import ModelConfig, RunConfig
from delo.methods.base import ContinualMethod, ParameterGroups, Prediction
from delo.methods.delo.config import LossConfig
from delo.methods.delo.diagnostics import Dynamics
from delo.methods.delo.layer import DeLoLinear, group_by_input
from delo.methods.delo.loss import LossOutput, compute_loss
from delo.vilt.context import MODES, ContextSlot, RoutingContext, RoutingStats, use_context
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
    head_first = False  # task k's pools are drawn before its head

    @classmethod
    def from_config(cls, vilt: ViltModel, cfg: RunConfig, multilabel: bool) -> DeLoModel:
        return cls(vilt, cfg.model, multilabel, loss=cfg.loss)

    def __init__(
        self, vilt: ViltModel, cfg: ModelConfig, multilabel: bool, loss: LossConfig | None = None
    ) -> None:
        if _checkpointing_on(vilt):
            raise ValueError(
                "gradient checkpointing re-runs ViLT layers after the routing context closed; disable it"
            )
        super().__init__(vilt, multilabel)  # freezes vilt before the pools are injected
        self.cfg = cfg
        self.loss_cfg = loss if loss is not None else LossConfig()
        self._slot = ContextSlot()
        self.tkm = TaskKeyMemory(self.hidden, cfg.tkm_keys)
        # checks model.tkm_layer before anything is injected
        self._key_site = KeySite(
            vilt, self._slot, self.tkm, cfg.tkm_layer, cfg.delta_scope == "own_tokens", cfg.variant
        )
        self.site_names = inject(
            vilt, cfg.targets, lambda name, linear: DeLoLinear(linear, name, self._slot, cfg)
        )
        self._sites: list[DeLoLinear] = [vilt.get_submodule(n) for n in self.site_names]
        if cfg.variant != "delo_lora":
            group_by_input(self._sites)
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

    def add_task(self, k: int) -> None:
        """Task k's pools at every site and its Task-Key Memory key."""
        for site in self._sites:
            site.add_task()
        self.tkm.add_task()

    def adapter_groups(self, k: int) -> ParameterGroups:
        """Task k's pools by role: ``main`` the factors (A, B, LoRA A/B), ``routing`` the routers (W_A, W_B,
        their biases) and the map M, so that routers can get their own learning rate."""
        self.check_task(k)
        pools = [site.pools[k] for site in self._sites]
        routers = [p for pool in pools for p in getattr(pool, "router_parameters", list)()]
        chosen = {id(p) for p in routers}
        factors = [p for pool in pools for p in pool.parameters() if id(p) not in chosen]
        return ParameterGroups(main=factors, routing=routers)

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        """Task k's pools ("sites.<linear>.<A|B|W_A|W_B|M>") and its Task-Key Memory key ("task_key")."""
        tensors = {
            f"sites.{site.site}.{name}": p
            for site in self._sites
            for name, p in site.pools[k].named_parameters()
        }
        tensors["task_key"] = self.tkm.keys[k]
        return tensors

    def training_loss(self, batch: dict, task: int, *, record_rows: bool = False) -> LossOutput:
        """L_cls + lambda1 L_align + lambda2 L_con (:func:`delo.methods.delo.loss.compute_loss`); ``parts`` are
        cls / align / con. ``record_rows`` (the training dynamics) also returns the pool entries each pass
        gathered."""
        return compute_loss(self, batch, task, self.loss_cfg, record_rows=record_rows)

    # ------------------------------------------------------------------------------------------------------
    # Routing statistics

    def training_dynamics(self, task: int, probe: dict, every: int) -> Dynamics:
        """Task ``task``'s routing entropy / churn on ``probe`` and gradient norms every ``every`` steps."""
        return Dynamics(self, task, probe, every)

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
        ctx = self._key_site.context(batch, mode, self._stats)
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
            self.check_task(task)
        self._key_site.assign_tasks(ctx, batch, task, self.num_tasks, lambda: self.run_vilt(batch))
        with use_context(self._slot, ctx):
            out = self.run_vilt(batch)
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
    def predict(self, batch: dict, task_aware: bool = False) -> Prediction:
        out = self(batch, "task_aware" if task_aware else "agnostic")
        return Prediction(task=out.task, scores=out.scores)

    @torch.no_grad()
    def infer_task(self, batch: dict) -> Tensor:
        """(B,) the task the Task-Key Memory assigns each sample, from the expert-free pass up to the key site
        (the same query and scores an agnostic forward routes with)."""
        return self._key_site.infer_task(batch, lambda: self.run_vilt(batch))

    def _scores(self, pooled: Tensor, ctx: RoutingContext) -> Tensor:
        """(B, C_total): each sample's task head in its columns, -inf elsewhere; a single-task pass runs that
        head only."""
        if ctx.uniform_task is not None:
            k = ctx.uniform_task
            return self.heads.scores_of(pooled, k, self.offsets[k])
        return self.heads.masked(self.heads.logits(pooled), ctx.task)
