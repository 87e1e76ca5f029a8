"""LoRA experts shared by every task: the wrapped linear and the method skeleton of `rank1_pool`, `moe_lora` and
`pass_moe` (docs/methods.md).

:class:`SharedExpertLinear` keeps the frozen linear as ``base_layer`` and adds ``scale * sum_e g_e B_e^T A_e x``
over E experts of rank r (``A`` (E, r, d_in), ``B`` (E, r, d_out)); the gates g come from the method (per sample
(B, E) or per token (B, S, E)). There is no task partition: one expert set per linear serves every task and keeps
training, so these methods are not ``frozen_after_task``.

:class:`SharedExpertsMethod` is the skeleton: per-task linear heads (:class:`TaskHeads`, earlier heads frozen,
class-incremental read-out over every seen class), the experts created at task 0, a per-method regulariser, and
task states that carry the shared tensors' values at each task's end. With ``task_inference=tkm`` (the ``+tkm``
variant) DeLo's Task-Key Memory picks each sample's head instead: its query is read at encoder layer 0's
LayerNorm-ed input, before any expert runs, so it is the adapter-free query DeLo, MoRA and ``frozen`` read.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.base import (
    ContinualMethod,
    MethodLoss,
    ParameterGroups,
    Prediction,
    check_state_names,
    copy_state_tensor,
)
from delo.methods.heads import classification_loss
from delo.vilt.context import ContextSlot, RoutingContext, use_context
from delo.vilt.inject import WrappedLinear, inject
from delo.vilt.key_site import KeySite
from delo.vilt.task_keys import TaskKeyMemory

#: gate(site, x (B, S, d_in), z (B, S, E, r) = A x) -> (B, E) per-sample or (B, S, E) per-token weights
Gate = Callable[["SharedExpertLinear", Tensor, Tensor], Tensor]


class SharedExpertLinear(WrappedLinear):
    """y = W x + b + scale * sum_e g_e(x) B_e^T (A_e x), with one expert set shared by every task."""

    def __init__(
        self,
        base_layer: nn.Linear,
        site: str,
        num_experts: int,
        rank: int,
        scale: float,
        router: str,
        gate: Gate,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.site = site
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.E, self.r, self.scale = num_experts, rank, scale
        weight = base_layer.weight
        like = {"device": weight.device, "dtype": weight.dtype}
        # Uninitialised here: the method fills them in begin_task(0), which the runner seeds.
        self.A = nn.Parameter(torch.empty(num_experts, rank, self.in_features, **like))
        self.B = nn.Parameter(torch.empty(num_experts, rank, self.out_features, **like))
        if router not in ("none", "linear", "linear_bias"):
            raise ValueError(f"unknown router {router!r}")
        self.router_weight = (
            None if router == "none" else nn.Parameter(torch.empty(num_experts, self.in_features, **like))
        )
        self.router_bias = nn.Parameter(torch.empty(num_experts, **like)) if router == "linear_bias" else None
        self.gate = gate  # the method's bound method: a plain attribute, not a submodule

    def router_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.router_weight, self.router_bias) if p is not None]

    def route_logits(self, query: Tensor) -> Tensor:
        """query (..., d_in) -> router logits (..., E)."""
        if self.router_weight is None:
            raise RuntimeError(f"{self.site}: this method has no router")
        logits = query @ self.router_weight.T
        return logits if self.router_bias is None else logits + self.router_bias

    def forward(self, x: Tensor) -> Tensor:
        result = self.base_layer(x)
        z = torch.einsum("bsd,erd->bser", x, self.A)  # (B, S, E, r): every expert's pathway activations
        gates = self.gate(self, x, z)  # (B, E) or (B, S, E)
        if gates.dim() == 2:
            gates = gates[:, None, :]  # (B, 1, E): one weight per sample, every token
        weighted = (z * gates[..., None]).flatten(2)  # (B, S, E*r)
        delta = weighted @ self.B.flatten(0, 1) * self.scale  # (B, S, E*r) @ (E*r, d_out) -> (B, S, d_out)
        return result + delta.to(result.dtype)

    def extra_repr(self) -> str:
        return f"site={self.site}, E={self.E}, r={self.r}, scale={self.scale:g}"


class SharedExpertsMethod(ContinualMethod):
    """Skeleton of the shared-expert comparators. Subclasses set the expert shape and router in ``__init__`` (via
    ``_inject``) and implement ``_gate``, ``_init_experts``, and optionally ``_begin_shared``, ``regulariser``,
    ``end_task`` and the carried buffers (``_carried``: buffer names on each site that travel in task states)."""

    frozen_after_task = False
    """The shared experts keep training on every task: every evaluation re-forwards every task."""

    #: name of the regulariser part in MethodLoss.parts (None: the method has none)
    regulariser_name: str | None = None
    #: per-site buffer names carried in task states (their value at the task's end; their shapes may grow)
    _carried: tuple[str, ...] = ()

    def __init__(
        self, vilt, cfg: ModelConfig, multilabel: bool, head_logits: str, task_inference: str, key: str
    ) -> None:
        """``task_inference``: ``heads`` or ``tkm``, the value of the dotted config key ``key``."""
        super().__init__(vilt, multilabel)
        self.cfg = cfg
        self.head_logits = head_logits
        self.site_names: list[str] = []
        self._sites: list[SharedExpertLinear] = []
        self.tkm: TaskKeyMemory | None = None
        self._key_site: KeySite | None = None
        if (
            task_inference == "tkm"
        ):  # model.tkm_layer = 0 is checked with the config (the section's check_with)
            self._slot = ContextSlot()
            self.tkm = TaskKeyMemory(self.hidden, cfg.tkm_keys)
            self._key_site = KeySite(vilt, self._slot, self.tkm, 0)
        elif task_inference != "heads":
            raise ValueError(f"unknown {key} {task_inference!r}; expected heads or tkm")

    def _inject(self, num_experts: int, rank: int, scale: float, router: str) -> None:
        self.site_names = inject(
            self.vilt,
            self.cfg.targets,
            lambda name, linear: SharedExpertLinear(
                linear, name, num_experts, rank, scale, router, self._gate
            ),
        )
        self._sites = [self.vilt.get_submodule(n) for n in self.site_names]

    @property
    def sites(self) -> list[SharedExpertLinear]:
        return list(self._sites)

    # -- hooks for subclasses --------------------------------------------------------------------------------

    @abstractmethod
    def _gate(self, site: SharedExpertLinear, x: Tensor, z: Tensor) -> Tensor:
        """The experts' weights of one linear's input: (B, E) per sample or (B, S, E) per token."""

    @abstractmethod
    def _init_experts(self) -> None:
        """Initialise every site's experts (once, at task 0; the runner seeds it)."""

    def _begin_shared(self, k: int) -> None:
        """Per-task resets of the shared state (after task k's head exists)."""

    def regulariser(self, task: int) -> Tensor:
        """The method's regulariser (unweighted) for a step of ``task``; called only with ``regulariser_name``."""
        raise TypeError(f"{type(self).__name__} has no regulariser")

    def regulariser_weight(self) -> float:
        raise TypeError(f"{type(self).__name__} has no regulariser")

    # -- tasks, parameters, states ---------------------------------------------------------------------------

    def add_task(self, k: int) -> None:
        """The experts at task 0 (after task 0's head: the order of the seeded draws); per-task resets; task k's
        key (``tkm``, zero: no draw)."""
        if k == 0:
            with torch.no_grad():
                self._init_experts()
        self._begin_shared(k)
        if self.tkm is not None:
            self.tkm.add_task()

    def adapter_groups(self, k: int) -> ParameterGroups:
        """``main``: every site's A and B (shared); ``routing``: every site's router."""
        return ParameterGroups(
            main=[p for site in self._sites for p in (site.A, site.B)],
            routing=[p for site in self._sites for p in site.router_parameters()],
        )

    def _shared_tensors(self) -> dict[str, Tensor]:
        tensors: dict[str, Tensor] = {}
        for site in self._sites:
            for name, p in site.named_parameters():
                if not name.startswith("base_layer."):
                    tensors[f"sites.{site.site}.{name}"] = p
            for name in self._carried:
                tensors[f"sites.{site.site}.{name}"] = getattr(site, name)
        return tensors

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        """The shared tensors (experts, routers, carried statistics) as they are now: at task k's end in
        ``task_state(k)``; with ``tkm`` task k's key (``task_key``)."""
        tensors = self._shared_tensors()
        if self.tkm is not None:
            tensors["task_key"] = self.tkm.keys[k]
        return tensors

    @torch.no_grad()
    def load_task_state(self, k: int, state: dict[str, Tensor]) -> None:
        live = self.task_tensors(k)
        check_state_names(k, live, state)
        carried = {
            f"sites.{site.site}.{name}": (site, name) for site in self._sites for name in self._carried
        }
        for name, tensor in live.items():
            if name in carried:  # statistics that grow with the tasks: replaced, not copied into
                site, buffer = carried[name]
                setattr(site, buffer, state[name].to(device=tensor.device, dtype=tensor.dtype).clone())
                continue
            copy_state_tensor(k, name, tensor, state[name])

    # -- forward, loss, prediction ---------------------------------------------------------------------------

    def pooled(self, batch: dict) -> Tensor:
        """(B, d) ViLT's pooled output with the experts in place."""
        if self.num_tasks == 0:
            raise RuntimeError("no task has begun: call begin_task(0, ...) first")
        return self.run_vilt(batch).pooler_output

    def keyed(self, batch: dict, mode: str, task: int | None = None) -> tuple[Tensor, RoutingContext | None]:
        """(pooled (B, d), the forward's routing context): with ``tkm`` the key site fills the context's
        ``key_query`` and, in mode ``agnostic``, each sample's ``task``; without, no context (None)."""
        if self._key_site is None:
            return self.pooled(batch), None
        ctx = self._key_site.context(batch, mode)
        self._key_site.assign_tasks(ctx, batch, task, self.num_tasks, lambda: self.run_vilt(batch))
        with use_context(self._slot, ctx):
            return self.pooled(batch), ctx

    def training_loss(self, batch: dict, task: int) -> MethodLoss:
        """Classification on head ``task`` (or every seen head, ``head_logits=seen``) plus the weighted
        regulariser; with ``tkm`` the pass's key query moves key ``task`` (EMA, ``model.beta``). Parts: ``cls``
        and the regulariser, unweighted."""
        seen = self.head_logits == "seen"
        pooled, ctx = self.keyed(batch, "train", task)
        if ctx is not None:
            self.tkm.update(task, ctx.key_query, ctx.missing, self.cfg.beta)
        logits = self.heads.task_logits(pooled, task, seen)  # (B, C_k) or (B, C_seen)
        span = slice(0, self.head_span(task).stop) if seen else self.head_span(task)
        cls = classification_loss(logits, batch["labels"], span, self.multilabel)
        if self.regulariser_name is None:
            return MethodLoss(total=cls, parts={"cls": cls})
        reg = self.regulariser(task)
        return MethodLoss(
            total=cls + self.regulariser_weight() * reg, parts={"cls": cls, self.regulariser_name: reg}
        )

    @torch.no_grad()
    def predict(self, batch: dict, task_aware: bool = False) -> Prediction:
        """Class-incremental over every seen class (the owner of the best column is the predicted task) or, with
        ``tkm``, the task the Task-Key Memory picks per sample; the true task's columns with ``task_aware``."""
        if task_aware:
            pooled = self.pooled(batch)
            return self.heads.predict(pooled, batch["task"].to(pooled.device, torch.long))
        pooled, ctx = self.keyed(batch, "agnostic")
        return self.heads.predict(pooled, None if ctx is None else ctx.task)


def kaiming_rows(weight: Tensor) -> None:
    """LoRA's A init (nn.Linear's kaiming_uniform with a = sqrt(5)) on every (…, d_in) row block."""
    nn.init.kaiming_uniform_(weight.view(-1, weight.shape[-1]), a=math.sqrt(5))
