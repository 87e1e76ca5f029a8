"""``DeLoLinear``: a frozen ``base_layer`` plus a routed, input-dependent delta (method.md §5).

Like peft's ``LoraLayer`` it keeps the original linear as ``base_layer`` and adds the adapter output, cast back
to the base output's dtype. There is no merge path: the delta depends on the input. Everything per-forward
(masks, missing codes, task per sample, query cache) comes from the routing context; outside one it raises.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from delo.config import ModelConfig
from delo.model.context import ContextSlot, QuerySite, RoutingContext
from delo.model.experts import (
    FactorPool,
    LoRAFactors,
    compose_delta,
    gather_factors,
    route,
    selection_counts,
    slot_weights,
)


def _stacked(tensors: list[Tensor]) -> Tensor:
    """(T, ...) view of per-task tensors; a single task is a view, not a copy (the training path)."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


class DeLoLinear(nn.Module):
    """y = W x + b + Delta_v(x) + Delta_t(x), with one pool set per learned task in ``pools``."""

    def __init__(self, base_layer: nn.Linear, site: str, slot: ContextSlot, cfg: ModelConfig) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.site = site
        # Linears fed by the same module (q, k, v) share an input; the queries are named after that module.
        self.query_site = site.rpartition(".")[0] or site
        self.variant = cfg.variant
        self.E, self.r, self.gate = cfg.E, cfg.r, cfg.gate
        self.scale = cfg.alpha / cfg.r
        self.pools = nn.ModuleList()
        self._slot = slot  # shared with the model; a plain attribute, not a submodule

    def add_task(self) -> nn.Module:
        """Create the next task's pools on the base layer's device and dtype."""
        if self.variant == "delo_lora":
            pool = LoRAFactors(self.in_features, self.out_features, self.r)
        else:
            pool = FactorPool(self.in_features, self.out_features, self.E, self.variant == "unified_pool")
        weight = self.base_layer.weight
        pool.to(device=weight.device, dtype=weight.dtype)
        self.pools.append(pool)
        return pool

    def forward(self, x: Tensor) -> Tensor:
        ctx = self._slot.get()
        result = self.base_layer(x)
        if ctx.mode == "keys":  # expert-free pass up to a deeper Task-Key Memory site (method.md §6)
            return result
        if ctx.task is None:
            raise RuntimeError(
                f"{self.site}: the task of each sample was not resolved before the first expert"
            )
        queries = ctx.queries_for(x, self.query_site)
        if self.variant == "delo_lora":
            delta = self._lora_delta(x, ctx)
        else:
            delta = self._routed_delta(x, ctx, queries)
        return result + delta.to(result.dtype)

    def _routed_delta(self, x: Tensor, ctx: RoutingContext, queries: QuerySite) -> Tensor:
        pools = [self.pools[k] for k in ctx.pool_tasks]
        a, b, w_a, w_b, m_map = (
            _stacked([getattr(p, n) for p in pools]) for n in ("A", "B", "W_A", "W_B", "M")
        )
        routing = route(queries.guided, w_a, w_b, m_map, ctx.pool_index, self.r, self.gate)
        if ctx.records:
            counts = selection_counts(routing, ctx.pool_index, len(pools), self.E)
            ctx.stats.add_selection(self.site, ctx.pool_tasks.start, counts)
        a_sel, b_sel = gather_factors(a, b, routing, ctx.pool_index, pools[0].table_index)
        weight = slot_weights(routing, self.scale, x.shape[0], self.r, x.device, a_sel.dtype)
        return compose_delta(x, a_sel, b_sel, weight, ctx.scope)

    def _lora_delta(self, x: Tensor, ctx: RoutingContext) -> Tensor:
        if ctx.uniform_task is not None:
            pool = self.pools[ctx.uniform_task]
            z = F.linear(x, pool.A) * self.scale  # (B, S, r)
            return z @ pool.B  # (B, S, r) @ (r, d_out) -> (B, S, d_out)
        pools = [self.pools[k] for k in ctx.pool_tasks]
        a_sel = _stacked([p.A for p in pools])[ctx.pool_index]  # (T, r, d_in) -> (B, r, d_in)
        b_sel = _stacked([p.B for p in pools])[ctx.pool_index]  # (T, r, d_out) -> (B, r, d_out)
        weight = a_sel.new_full((x.shape[0], self.r), self.scale)  # (B, r)
        return compose_delta(x, a_sel, b_sel, weight)

    def extra_repr(self) -> str:
        return f"site={self.site}, variant={self.variant}, E={self.E}, r={self.r}, tasks={len(self.pools)}"
