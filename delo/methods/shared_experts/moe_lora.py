"""LoRA experts shared by every task: the wrapped linear and the method skeleton of `rank1_pool`, `moe_lora` and
`pass_moe` (docs/methods.md), plus the two MoE-LoRA methods themselves.

:class:`SharedExpertLinear` keeps the frozen linear as ``base_layer`` and adds ``scale * sum_e g_e B_e^T A_e x``
over E experts of rank r (``A`` (E, r, d_in), ``B`` (E, r, d_out)); the gates g come from the method (per sample
(B, E) or per token (B, S, E)). There is no task partition: one expert set per linear serves every task and keeps
training, so these methods are not ``frozen_after_task``.

:class:`SharedExpertsMethod` is the skeleton: per-task linear heads (:class:`TaskHeads`, earlier heads frozen,
class-incremental read-out over every seen class), the experts created at task 0, a per-method regulariser, and
task states that carry the shared tensors' values at each task's end.

:class:`MoELoRA` is the plain MoE-LoRA (token-level softmax router); :class:`PASsMoE` adds PAS-guided
reweighting of the router and PAS-aware rank stabilisation (Hou et al., arXiv 2601.13020).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.base import (
    ContinualMethod,
    MethodLoss,
    Prediction,
    TaskHeads,
    check_state_names,
    copy_state_tensor,
)
from delo.methods.delo.loss import classification_loss
from delo.vilt.inject import inject

#: gate(site, x (B, S, d_in), z (B, S, E, r) = A x) -> (B, E) per-sample or (B, S, E) per-token weights
Gate = Callable[["SharedExpertLinear", Tensor, Tensor], Tensor]


class SharedExpertLinear(nn.Module):
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

    def __init__(self, vilt, cfg: ModelConfig, multilabel: bool, head_logits: str) -> None:
        super().__init__(vilt, multilabel)
        self.cfg = cfg
        self.head_logits = head_logits
        self.heads = TaskHeads(self.hidden)
        self.site_names: list[str] = []
        self._sites: list[SharedExpertLinear] = []

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

    def _gate(self, site: SharedExpertLinear, x: Tensor, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _init_experts(self) -> None:
        raise NotImplementedError

    def _begin_shared(self, k: int) -> None:
        """Per-task resets of the shared state (after task k's head exists)."""

    def regulariser(self, task: int) -> Tensor:
        """The method's regulariser (unweighted) for a step of ``task``; methods without one never call this."""
        raise NotImplementedError

    def regulariser_weight(self) -> float:
        raise NotImplementedError

    # -- tasks, parameters, states ---------------------------------------------------------------------------

    def begin_task(self, k: int, num_classes: int, offset: int) -> None:
        """Task k's head (earlier heads frozen: only the shared experts keep training); the experts at task 0."""
        self._register_task(k, num_classes, offset)
        for head in self.heads.heads:
            head.requires_grad_(False)
        self.heads.add(num_classes, self.vilt.pooler.dense.weight)
        if k == 0:
            with torch.no_grad():
                self._init_experts()
        self._begin_shared(k)

    def task_parameter_groups(self, k: int) -> dict[str, list[nn.Parameter]]:
        """``factors``: every site's A and B (shared) and head k; ``routers``: every site's router."""
        if not 0 <= k < self.num_tasks:
            raise IndexError(f"task {k} has not begun ({self.num_tasks} tasks so far)")
        factors = [p for site in self._sites for p in (site.A, site.B)]
        return {
            "factors": factors + list(self.heads.heads[k].parameters()),
            "routers": [p for site in self._sites for p in site.router_parameters()],
        }

    def head_parameters(self, k: int) -> int:
        return sum(p.numel() for p in self.heads.heads[k].parameters())

    def _shared_tensors(self) -> dict[str, Tensor]:
        tensors: dict[str, Tensor] = {}
        for site in self._sites:
            for name, p in site.named_parameters():
                if not name.startswith("base_layer."):
                    tensors[f"sites.{site.site}.{name}"] = p
            for name in self._carried:
                tensors[f"sites.{site.site}.{name}"] = getattr(site, name)
        return tensors

    def task_state(self, k: int) -> dict[str, Tensor]:
        """Head k and the shared tensors (experts, routers, carried statistics) as they are at task k's end."""
        state = {f"head.{n}": p for n, p in self.heads.heads[k].named_parameters()}
        state.update(self._shared_tensors())
        return {name: t.detach().clone() for name, t in state.items()}

    @torch.no_grad()
    def load_task_state(self, k: int, state: dict[str, Tensor]) -> None:
        live = {f"head.{n}": p for n, p in self.heads.heads[k].named_parameters()}
        live.update(self._shared_tensors())
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

    def training_loss(self, batch: dict, task: int, loss_cfg, record_rows: bool = False) -> MethodLoss:
        """Classification on head ``task`` (or every seen head, ``head_logits=seen``) plus the weighted
        regulariser; ``loss_cfg`` (DeLo's) is not read. Parts: ``cls`` and the regulariser, unweighted."""
        seen = self.head_logits == "seen"
        logits = self.heads.task_logits(self.pooled(batch), task, seen)  # (B, C_k) or (B, C_seen)
        span = slice(0, self.head_span(task).stop) if seen else self.head_span(task)
        cls = classification_loss(logits, batch["labels"], span, self.multilabel)
        if self.regulariser_name is None:
            return MethodLoss(total=cls, parts={"cls": cls})
        reg = self.regulariser(task)
        return MethodLoss(
            total=cls + self.regulariser_weight() * reg, parts={"cls": cls, self.regulariser_name: reg}
        )

    @torch.no_grad()
    def predict(self, batch: dict, oracle: bool = False) -> Prediction:
        """Class-incremental over every seen class (the owner of the best column is the predicted task), or the
        true task's columns with ``oracle``."""
        pooled = self.pooled(batch)
        task = batch["task"].to(pooled.device, torch.long) if oracle else None
        return self.heads.predict(pooled, task)


def kaiming_rows(weight: Tensor) -> None:
    """LoRA's A init (nn.Linear's kaiming_uniform with a = sqrt(5)) on every (…, d_in) row block."""
    nn.init.kaiming_uniform_(weight.view(-1, weight.shape[-1]), a=math.sqrt(5))


# ----------------------------------------------------------------------------------------------------------
# MoE-LoRA and PASs-MoE


def pathway_energy(x: Tensor, A: Tensor) -> Tensor:
    """Each expert's pathway activation energy: x (B, S, d_in), A (E, r, d_in) -> (B, S, E), the mean over an
    orthonormal basis Q_e of span(A_e rows) (the expert's PAS) of (q . x)^2; QR in float32 for stability."""
    q = torch.linalg.qr(A.float().transpose(1, 2)).Q  # (E, d_in, r)
    coords = torch.einsum("bsd,edr->bser", x.float(), q)  # (B, S, E, r) coordinates in each PAS
    return coords.pow(2).mean(-1)  # (B, S, E)


class MoELoRA(SharedExpertsMethod):
    """Plain MoE-LoRA: E rank-r LoRA experts per adapted linear, a token-level softmax router (logits / tau),
    shared by every task, no continual-learning mechanism (docs/methods.md#moe_lora)."""

    def __init__(self, vilt, cfg: ModelConfig, multilabel: bool) -> None:
        moe = cfg.moe_lora
        super().__init__(vilt, cfg, multilabel, moe.head_logits)
        self.moe = moe
        self._inject(moe.E, moe.r, moe.alpha / moe.r, self._router_kind())

    def _router_kind(self) -> str:
        return "linear"

    def _init_experts(self) -> None:
        # The PASs-MoE code's init: A ~ N(0, 0.01), B = 0 (the model equals the backbone at step 0), router
        # vectors ~ N(0, 0.02).
        for site in self._sites:
            nn.init.normal_(site.A, std=0.01)
            nn.init.zeros_(site.B)
            if site.router_weight is not None:
                nn.init.normal_(site.router_weight, std=0.02)

    def router_scores(self, site: SharedExpertLinear, x: Tensor) -> Tensor:
        """(B, S, E) scores before the softmax: the router's logits."""
        return site.route_logits(x)

    def _gate(self, site: SharedExpertLinear, x: Tensor, z: Tensor) -> Tensor:
        scores = self.router_scores(site, x)  # (B, S, E)
        return (scores / self.moe.tau).softmax(-1).to(z.dtype)  # (B, S, E) dense, per token


class PASsMoE(MoELoRA):
    """PASs-MoE (Hou et al., arXiv 2601.13020) on the MoE-LoRA above: PAS-guided reweighting of the router by each
    expert's pathway activation energy, and PAS-aware rank stabilisation of the rank directions (A rows, B
    columns) important to earlier tasks, with importance accumulated at each task's end (docs/methods.md#pass_moe).
    """

    regulariser_name = "stab"
    _carried = ("importance", "a_ref", "b_ref")

    def __init__(self, vilt, cfg: ModelConfig, multilabel: bool) -> None:
        self.pas = cfg.pass_moe
        super().__init__(vilt, cfg, multilabel)
        for site in self._sites:
            like = {"device": site.A.device, "dtype": site.A.dtype}
            # importance (E, r) of each rank direction summed over earlier tasks (0: no task has ended), and the
            # importance-weighted reference values of A (E, r, d_in) and B (E, r, d_out) it anchors to
            site.register_buffer("importance", torch.zeros(site.E, site.r, **like), persistent=False)
            site.register_buffer("a_ref", torch.zeros_like(site.A), persistent=False)
            site.register_buffer("b_ref", torch.zeros_like(site.B), persistent=False)

    def _router_kind(self) -> str:
        return "none" if self.cfg.pass_moe.reweight == "pas_only" else "linear"

    def router_scores(self, site: SharedExpertLinear, x: Tensor) -> Tensor:
        if self.pas.reweight == "off":
            return site.route_logits(x)
        energy = pathway_energy(x, site.A).to(x.dtype)  # (B, S, E)
        return energy if self.pas.reweight == "pas_only" else site.route_logits(x) + energy

    def regulariser_weight(self) -> float:
        return self.pas.stabilize_weight

    def _stabilised(self, site: SharedExpertLinear) -> Tensor:
        """(E, r) weights of the rank directions: importance / its site mean, capped, the top-p share kept."""
        imp = site.importance.clamp(min=0)
        imp = (imp / imp.mean().clamp(min=1e-12)).clamp(max=self.pas.importance_clip)
        flat = imp.flatten()
        keep = max(1, round(flat.numel() * self.pas.importance_top_p))
        mask = torch.zeros_like(flat).scatter_(0, flat.topk(keep).indices, 1.0)
        return (flat * mask).view_as(imp)

    def regulariser(self, task: int) -> Tensor:
        """PAS-aware rank stabilisation: (1/N) sum over sites and rank directions (e, j) of w_ej (||A_ej -
        A_ref_ej||^2 + b_scale ||B_ej - B_ref_ej||^2), N the number of rank directions; exactly 0 on task 0."""
        if task == 0:
            return torch.zeros((), device=self._sites[0].A.device)
        total, count = 0.0, 0
        for site in self._sites:
            w = self._stabilised(site)  # (E, r)
            drift_a = (site.A - site.a_ref).pow(2).sum(-1)  # (E, r)
            drift_b = (site.B - site.b_ref).pow(2).sum(-1)  # (E, r)
            total = total + (w * (drift_a + self.pas.b_scale * drift_b)).sum()
            count += w.numel()
        return total / count

    @torch.no_grad()
    def end_task(self, k: int, make_loader) -> None:
        """Importance of task k's rank directions, I_t(e, j) = mean over its train tokens of (a_ej . x)^2 at each
        site, folded in: I <- I + I_t, references <- the I-weighted mean of the old references and today's A, B."""
        from delo.runtime import move_batch

        device = self._sites[0].A.device
        sums = {site.site: torch.zeros(site.E, site.r, device=device) for site in self._sites}
        tokens = {site.site: 0 for site in self._sites}

        def record(module: SharedExpertLinear, args, output) -> None:
            x = args[0]
            z = torch.einsum("bsd,erd->bser", x.float(), module.A.float())  # (B, S, E, r)
            sums[module.site] += z.pow(2).sum((0, 1))
            tokens[module.site] += x.shape[0] * x.shape[1]

        handles = [site.register_forward_hook(record) for site in self._sites]
        was_training = self.training
        self.eval()
        try:
            for batch in make_loader():
                self.pooled(move_batch(batch, device))
        finally:
            for h in handles:
                h.remove()
            self.train(was_training)
        for site in self._sites:
            if tokens[site.site] == 0:
                raise RuntimeError(f"task {k}: no training sample reached {site.site}")
            current = (sums[site.site] / tokens[site.site]).to(site.importance.dtype)  # (E, r)
            total = site.importance + current
            old_w = (site.importance / total.clamp(min=1e-12))[..., None]  # (E, r, 1)
            new_w = (current / total.clamp(min=1e-12))[..., None]
            site.a_ref = old_w * site.a_ref + new_w * site.A.detach()
            site.b_ref = old_w * site.b_ref + new_w * site.B.detach()
            site.importance = total


__all__ = [
    "MoELoRA",
    "PASsMoE",
    "SharedExpertLinear",
    "SharedExpertsMethod",
    "kaiming_rows",
    "pathway_energy",
]
