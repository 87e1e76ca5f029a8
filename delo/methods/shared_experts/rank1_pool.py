"""``rank1_pool``: a single LoRA per adapted linear as a pool of E rank-one experts shared by every task (Fa et
al., "Decomposing and Composing", arXiv 2601.22828; docs/methods.md#rank1_pool).

Per sample, a router on the text [CLS] query picks the top-k experts; their rank-one updates compose the delta.
The Activation-Guided Orthogonal (AGO) loss keeps the current task's update of its most-activated experts' B
vectors orthogonal (L1 of the inner products) to the B vectors of the experts each earlier task activated most;
those are found by an end-of-task pass over the task's training data and stored (``prev_dirs``) in task states.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.shared_experts.base import SharedExpertLinear, SharedExpertsMethod, kaiming_rows


class RankOnePool(SharedExpertsMethod):
    regulariser_name = "ago"
    _carried = ("prev_dirs",)

    def __init__(self, vilt, cfg: ModelConfig, multilabel: bool) -> None:
        pool = cfg.rank1_pool
        super().__init__(
            vilt, cfg, multilabel, pool.head_logits, pool.task_inference, "model.rank1_pool.task_inference"
        )
        self.pool = pool
        self._inject(pool.E, 1, pool.alpha / pool.E, "linear_bias")
        for site in self._sites:
            like = {"device": site.A.device, "dtype": site.A.dtype}
            # selections per expert: the current task's training forwards (AGO's active set) or, inside
            # end_task, the task's end-of-task pass
            site.register_buffer("counts", torch.zeros(site.E, **like), persistent=False)
            site.register_buffer("b_start", torch.zeros(site.E, site.out_features, **like), persistent=False)
            # (M, d_out) B vectors of the experts earlier tasks activated most (ago_top per task, at its end)
            site.register_buffer("prev_dirs", torch.zeros(0, site.out_features, **like), persistent=False)
        self._query: Tensor | None = None  # (B, d) layer-0 [CLS] of the forward in flight (query=layer0)
        self._counting = False
        if pool.query == "layer0":
            vilt.encoder.layer[0].layernorm_before.register_forward_hook(self._on_layer0)

    def _init_experts(self) -> None:
        # The authors' LoRA init: A kaiming-uniform (a = sqrt(5)), B = 0 (the model equals the backbone at step 0);
        # the router as nn.Linear(d_in, E) initialises itself.
        for site in self._sites:
            kaiming_rows(site.A)
            nn.init.zeros_(site.B)
            kaiming_rows(site.router_weight)
            bound = 1.0 / site.in_features**0.5
            nn.init.uniform_(site.router_bias, -bound, bound)

    def _begin_shared(self, k: int) -> None:
        for site in self._sites:
            site.counts.zero_()
            site.b_start.copy_(site.B.detach()[:, 0])  # the pool as task k finds it: AGO acts on the update

    # -- routing ----------------------------------------------------------------------------------------------

    def _on_layer0(self, module: nn.Module, args, output: Tensor) -> None:
        self._query = output[:, 0]  # (B, d) text [CLS], LayerNorm-ed, before any expert of layer 0

    def pooled(self, batch: dict) -> Tensor:
        self._query = None
        try:
            return super().pooled(batch)
        finally:
            self._query = None  # never route a later forward by this one's query

    def selection(self, site: SharedExpertLinear, x: Tensor) -> tuple[Tensor, Tensor]:
        """Router probabilities (B, E) and the top-k mask (B, E) of each sample, from its [CLS] query."""
        if self.pool.query == "site":
            query = x[:, 0]  # (B, d_in) text [CLS] at this linear's input
        else:
            if self._query is None:
                raise RuntimeError(f"{site.site}: the layer-0 [CLS] query was not captured in this forward")
            query = self._query
        probs = site.route_logits(query).float().softmax(-1)  # (B, E)
        top = probs.topk(self.pool.k, dim=-1).indices  # (B, k)
        mask = torch.zeros_like(probs).scatter_(1, top, 1.0)  # (B, E)
        return probs, mask

    def _gate(self, site: SharedExpertLinear, x: Tensor, z: Tensor) -> Tensor:
        probs, mask = self.selection(site, x)
        if self.training or self._counting:
            site.counts += mask.sum(0).to(site.counts.dtype)
        if self.pool.gate == "hard":
            gates = mask
        elif self.pool.gate == "ste":
            gates = mask * (1.0 + probs - probs.detach())  # value 1 on the selected, gradient of their probs
        else:
            chosen = probs * mask
            gates = chosen / chosen.sum(-1, keepdim=True)
        return gates.to(z.dtype)  # (B, E)

    # -- AGO ---------------------------------------------------------------------------------------------------

    def regulariser_weight(self) -> float:
        return self.pool.ago_weight

    def regulariser(self, task: int) -> Tensor:
        """AGO: mean over sites of sum |(B_i - B_i^start) . b_prev| over the current task's ``ago_top``
        most-selected experts i and every stored earlier-task vector b_prev; exactly 0 on task 0."""
        if task == 0:
            return torch.zeros((), device=self._sites[0].A.device)
        total = 0.0
        for site in self._sites:
            active = site.counts.topk(
                self.pool.ago_top
            ).indices  # (m,) the task's most-selected experts so far
            update = site.B[active, 0] - site.b_start[active]  # (m, d_out) what this task wrote into them
            total = total + (update @ site.prev_dirs.T).abs().sum()  # (m, d_out) @ (d_out, M)
        return total / len(self._sites)

    @torch.no_grad()
    def end_task(self, k: int, make_loader) -> None:
        """Count every expert's selections over task k's training data with the final model and store the B
        vectors of the ``ago_top`` most selected (their value now) as directions later tasks stay orthogonal to."""
        from delo.runtime import move_batch

        device = self._sites[0].A.device
        for site in self._sites:
            site.counts.zero_()
        was_training = self.training
        self.eval()
        self._counting = True
        try:
            for batch in make_loader():
                self.pooled(move_batch(batch, device))
        finally:
            self._counting = False
            self.train(was_training)
        for site in self._sites:
            top = site.counts.topk(self.pool.ago_top).indices  # (m,)
            site.prev_dirs = torch.cat([site.prev_dirs, site.B.detach()[top, 0]])  # (M + m, d_out)
            site.counts.zero_()


__all__ = ["RankOnePool"]
