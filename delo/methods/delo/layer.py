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
from delo.methods.delo.experts import (
    FactorPool,
    LoRAFactors,
    compose_delta,
    gather_factors,
    route,
    selected_rows,
    selection_counts,
    slot_weights,
    stack_pools,
)
from delo.vilt.context import ContextSlot, QuerySite, RoutingContext
from delo.vilt.inject import WrappedLinear


class SiteGroup:
    """Wrapped linears fed the same input (q, k, v of one layer): one routing and one composition for all.

    They share the routing queries (method.md §3), so their routers, gathers and factor products batch into
    single ops. The first member called in a forward computes every member's delta and the others pick theirs
    up; a member called with a different input tensor recomputes, so grouping changes speed, never results.
    """

    def __init__(self, sites: list[DeLoLinear]) -> None:
        self.sites = sites

    def delta(self, site: DeLoLinear, x: Tensor, ctx: RoutingContext, queries: QuerySite) -> Tensor:
        member = next(i for i, s in enumerate(self.sites) if s is site)
        entry = ctx.group_deltas.get(id(self))
        if entry is None or entry[0] is not x or entry[1][member] is None:
            entry = ctx.group_deltas[id(self)] = (x, self._compute(x, ctx, queries))
        delta, entry[1][member] = entry[1][member], None  # handed over: the context must not keep it alive
        return delta

    def _compute(self, x: Tensor, ctx: RoutingContext, queries: QuerySite) -> list[Tensor]:
        lead = self.sites[0]
        keep = None if ctx.row_keep is None else ctx.row_keep[lead.site]
        pools = stack_pools([[site.pools[k] for k in ctx.pool_tasks] for site in self.sites], keep)
        routing = route(queries.guided, pools, ctx.pool_index, lead.r, lead.gate, lead.pairing)
        if (
            ctx.row_usage is not None
        ):  # entries gathered by this (single-task) pass, for L_con and diagnostics
            rows = selected_rows(routing, pools.table_index, lead.E)  # (2, G, P, E)
            previous = ctx.row_usage.get(lead.site)
            ctx.row_usage[lead.site] = rows if previous is None else rows | previous
        if ctx.selections is not None:
            ctx.selections[lead.site] = (routing.a_idx, routing.b_idx)
        if ctx.records:
            counts = selection_counts(routing, ctx.pool_index, len(ctx.pool_tasks), lead.E)  # (G, T, 2, 2, E)
            for site, site_counts in zip(self.sites, counts, strict=False):
                ctx.stats.add_selection(site.site, ctx.pool_tasks.start, site_counts)
        a_sel, b_sel = gather_factors(pools, routing, ctx.pool_index)
        weight = slot_weights(routing, lead.scale, lead.entry_rank)  # (B, G*2r*rho)
        deltas = compose_delta(x, a_sel, b_sel, weight, ctx.scope)  # (B, G, S, d_out)
        return list(deltas.unbind(1))  # G x (B, S, d_out)


def group_by_input(sites: list[DeLoLinear]) -> None:
    """Group linears fed by the same module (q, k, v of one layer) and of equal shape into shared SiteGroups."""
    groups: dict[tuple, list[DeLoLinear]] = {}
    for site in sites:
        groups.setdefault((site.query_site, site.in_features, site.out_features), []).append(site)
    for members in groups.values():
        group = SiteGroup(members)
        for site in members:
            site.group = group


class DeLoLinear(WrappedLinear):
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
        self.E, self.r, self.gate, self.pairing = cfg.E, cfg.r, cfg.gate, cfg.pairing
        self.entry_rank = cfg.r if cfg.entry_rank == "r" else 1
        self.a_init, self.a_init_std = cfg.a_init, cfg.a_init_std
        self.scale = cfg.alpha / cfg.r if cfg.scale == "alpha_over_r" else cfg.alpha
        self.pools = nn.ModuleList()
        self.group = SiteGroup([self])  # the model regroups linears that share an input
        self._slot = slot  # shared with the model; a plain attribute, not a submodule

    def add_task(self) -> nn.Module:
        """Create the next task's pools on the base layer's device and dtype."""
        if self.variant == "delo_lora":
            pool = LoRAFactors(self.in_features, self.out_features, self.r)
        else:
            pool = FactorPool(
                self.in_features,
                self.out_features,
                self.E,
                shared_table=self.variant == "unified_pool",
                entry_rank=self.entry_rank,
                a_init=self.a_init,
                a_init_std=self.a_init_std,
            )
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
            delta = self.group.delta(self, x, ctx, queries)
        return result + delta.to(result.dtype)

    def _lora_delta(self, x: Tensor, ctx: RoutingContext) -> Tensor:
        if ctx.uniform_task is not None:
            pool = self.pools[ctx.uniform_task]
            z = F.linear(x, pool.A) * self.scale  # (B, S, r)
            return z @ pool.B  # (B, S, r) @ (r, d_out) -> (B, S, d_out)
        stacked = [self.pools[k] for k in ctx.pool_tasks]
        a_sel = torch.stack([p.A for p in stacked])[ctx.pool_index]  # (T, r, d_in) -> (B, r, d_in)
        b_sel = torch.stack([p.B for p in stacked])[ctx.pool_index]  # (T, r, d_out) -> (B, r, d_out)
        weight = a_sel.new_full((x.shape[0], self.r), self.scale)  # (B, r)
        return compose_delta(x, a_sel, b_sel[:, None], weight)[:, 0]  # (B, 1, S, d_out) -> (B, S, d_out)

    def extra_repr(self) -> str:
        return f"site={self.site}, variant={self.variant}, E={self.E}, r={self.r}, tasks={len(self.pools)}"
