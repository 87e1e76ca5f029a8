"""MoE-LoRA (the token-level softmax router over shared LoRA experts) and PASs-MoE, which adds PAS-guided
reweighting of the router and PAS-aware rank stabilisation (Hou et al., arXiv 2601.13020; docs/methods.md)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.shared_experts.base import SharedExpertLinear, SharedExpertsMethod, kaiming_rows

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
        super().__init__(vilt, cfg, multilabel, moe.head_logits, *self._task_inference(cfg))
        self.moe = moe
        self._inject(moe.E, moe.r, moe.alpha / moe.r, self._router_kind())

    @staticmethod
    def _task_inference(cfg: ModelConfig) -> tuple[str, str]:
        """(``task_inference``, the key it was read from)."""
        return cfg.moe_lora.task_inference, "model.moe_lora.task_inference"

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

    @staticmethod
    def _task_inference(cfg: ModelConfig) -> tuple[str, str]:
        """pass_moe reads ``model.pass_moe.task_inference`` (the config refuses moe_lora's key with pass_moe)."""
        return cfg.pass_moe.task_inference, "model.pass_moe.task_inference"

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
