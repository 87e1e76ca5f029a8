"""Factor pools, routers, gates and the batched delta: pure tensor math (method.md §2, §5).

Shapes: B batch, S tokens, d_in/d_out of the adapted linear, E factors per pool, r selected, T stacked tasks,
P factor tables per task (2 modality-specific, 1 under ``unified_pool``). Modality index 0 is vision, 1 text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

GATES = ("ste", "weighted", "hard")


def _kaiming_rows(weight: Tensor) -> None:
    """nn.Linear's / LoRA-A's init on each (rows, fan_in) slice, so a leading table axis leaves fan_in alone."""
    for table in weight.view(-1, *weight.shape[-2:]):
        nn.init.kaiming_uniform_(table, a=math.sqrt(5))


class FactorPool(nn.Module):
    """One task's pools at one adapted linear: factors, routers and A->B compatibility maps of both modalities.

    The two modalities of a task are trained and frozen together, so they share one tensor per role; this
    keeps routing of both modalities in a single batched op.
    """

    def __init__(self, d_in: int, d_out: int, E: int, shared_table: bool = False) -> None:
        super().__init__()
        tables = 1 if shared_table else 2
        self.A = nn.Parameter(torch.empty(tables, E, d_in))  # factors a_e
        self.B = nn.Parameter(torch.zeros(tables, E, d_out))  # factors b_e; zero -> identity at step 0
        self.W_A = nn.Parameter(torch.empty(2, E, d_in))  # A-router, no bias
        self.W_B = nn.Parameter(torch.empty(2, E, d_in))  # B-router, no bias
        self.M = nn.Parameter(torch.empty(2, E, E))  # compatibility map (Kaiming-uniform is ours)
        for weight in (self.A, self.W_A, self.W_B, self.M):
            _kaiming_rows(weight.data)
        # The factor table each modality's routing reads: (0, 1), or (0, 0) for one shared table.
        self.register_buffer("table_index", torch.tensor([0, tables - 1]), persistent=False)


class LoRAFactors(nn.Module):
    """``delo_lora``: one static rank-r LoRA per site and task, applied to every token (method.md §9)."""

    def __init__(self, d_in: int, d_out: int, r: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(r, d_in))
        self.B = nn.Parameter(torch.zeros(r, d_out))  # stored transposed (r x d_out): same count as d_out x r
        _kaiming_rows(self.A.data)


@dataclass
class StackedPools:
    """Pools of G sites (sharing one input) x T tasks, stacked so that routing and composition run batched."""

    a: Tensor  # (G, T, P, E, d_in)
    b: Tensor  # (G, T, P, E, d_out)
    routers: Tensor  # (2 [W_A, W_B], G, T, 2, E, d_in)
    m_map: Tensor  # (G, T, 2, E, E)
    table_index: Tensor  # (2,) long: the factor table each modality reads


def stack_pools(grid: list[list[FactorPool]]) -> StackedPools:
    """grid[g][t]: pool of site g for the t-th stacked task. One copy per role; small next to activations."""
    sites, tasks = len(grid), len(grid[0])
    flat = [pool for row in grid for pool in row]
    return StackedPools(
        a=torch.stack([p.A for p in flat]).unflatten(0, (sites, tasks)),  # (G, T, P, E, d_in)
        b=torch.stack([p.B for p in flat]).unflatten(0, (sites, tasks)),  # (G, T, P, E, d_out)
        # W_A and W_B stacked together: one contraction with the queries gives both logits.
        routers=torch.stack([p.W_A for p in flat] + [p.W_B for p in flat]).unflatten(0, (2, sites, tasks)),
        m_map=torch.stack([p.M for p in flat]).unflatten(0, (sites, tasks)),  # (G, T, 2, E, E)
        table_index=flat[0].table_index,
    )


@dataclass
class Routing:
    """Selections for G sites and both modalities; slot i pairs the i-th best A with the i-th best B."""

    a_idx: Tensor  # (B, G, 2, r) long, by descending p_A
    b_idx: Tensor  # (B, G, 2, r) long, by descending s_B
    gamma: Tensor | None  # (B, G, 2, r) slot gates; None means all ones without gradient (hard gate)


def route(q_hat: Tensor, pools: StackedPools, pool_index: Tensor, r: int, gate: str) -> Routing:
    """Top-r selection of A and B factors (method.md §5, steps 1-2).

    q_hat: (B, 2, d_in) routing query per modality pool; pool_index: (B,) each sample's task in the stack.
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {GATES}")
    rows = torch.arange(q_hat.shape[0], device=q_hat.device)
    # Hard routing is the paper's literal form: no router or map gradient at all.
    with torch.set_grad_enabled(torch.is_grad_enabled() and gate != "hard"):
        logits = torch.einsum("bmd,ngtmed->nbtgme", q_hat, pools.routers)  # (2, B, T, G, 2, E)
        logits_a, logits_b = logits[:, rows, pool_index]  # each sample's own task: 2 x (B, G, 2, E)
        p_a = logits_a.softmax(dim=-1)
        top_a, a_idx = p_a.topk(r, dim=-1)  # (B, G, 2, r), sorted descending
        g_a = torch.zeros_like(p_a).scatter_(-1, a_idx, 1.0)  # (B, G, 2, E) binary top-r mask
        if gate == "ste":
            # Forward value exactly unchanged; the gradient reaches W_A through M's term.
            g_a = g_a + (p_a - p_a.detach())
        m_sel = pools.m_map[:, pool_index]  # (G, T, 2, E, E) -> (G, B, 2, E, E)
        compat = torch.einsum("bgme,gbmef->bgmf", g_a, m_sel)  # (B, G, 2, E): g_A M
        s_b = logits_b.softmax(dim=-1) + compat.softmax(dim=-1)  # (B, G, 2, E)
        top_b, b_idx = s_b.topk(r, dim=-1)  # (B, G, 2, r)
    if gate == "hard":
        return Routing(a_idx, b_idx, None)
    if gate == "ste":
        # Straight-through: exactly 1 forward, d(gamma)/d(score) = 1 on the selected slots.
        gamma = (1.0 + (top_a - top_a.detach())) * (1.0 + (top_b - top_b.detach()))
    else:
        # Scores renormalised over the r selected, scaled by r so that uniform scores give gamma = 1.
        gamma = (r * top_a / top_a.sum(-1, keepdim=True)) * (r * top_b / top_b.sum(-1, keepdim=True))
    return Routing(a_idx, b_idx, gamma)


def gather_factors(pools: StackedPools, routing: Routing, pool_index: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample selected factors; slots ordered (site, modality [vision first], rank).

    Returns A_sel (B, G*2r, d_in) and B_sel (B, G, 2r, d_out).
    """
    sites = pools.a.shape[0]
    site = torch.arange(sites, device=pool_index.device)[None, :, None, None]  # (1, G, 1, 1)
    task = pool_index[:, None, None, None]  # (B, 1, 1, 1)
    table = pools.table_index[None, None, :, None]  # (1, 1, 2, 1)
    a_sel = pools.a[site, task, table, routing.a_idx]  # (B, G, 2, r, d_in)
    b_sel = pools.b[site, task, table, routing.b_idx]  # (B, G, 2, r, d_out)
    return a_sel.flatten(1, 3), b_sel.flatten(2, 3)


def slot_weights(routing: Routing, scale: float) -> Tensor:
    """(B, G*2r) per-slot multiplier s * gamma_i."""
    if routing.gamma is None:
        return torch.full(routing.a_idx.flatten(1).shape, scale, device=routing.a_idx.device)
    return routing.gamma.flatten(1) * scale  # (B, G, 2, r) -> (B, G*2r)


def compose_delta(
    x: Tensor, a_sel: Tensor, b_sel: Tensor, weight: Tensor, scope: Tensor | None = None
) -> Tensor:
    """Delta = sum over slots of weight * b (a . x), never forming a d_out x d_in matrix (method.md §5).

    x: (B, S, d_in); a_sel: (B, G*K, d_in); b_sel: (B, G, K, d_out) with K = 2r (vision slots, then text);
    weight: (B, G*K); scope: None, or (1, S, 2, 1) switching vision / text slots per token.
    Returns (B, G, S, d_out): one delta per site.
    """
    batch, tokens = x.shape[:2]
    sites, slots = b_sel.shape[1:3]
    z = torch.einsum("bsd,bkd->bsk", x, a_sel)  # (B, S, G*K): a . x per token and slot
    z = z * weight[:, None, :].to(z.dtype)  # (B, S, G*K)
    z = z.view(batch, tokens, sites, slots)  # (B, S, G, K)
    if scope is not None:
        z = z.view(batch, tokens, sites, 2, slots // 2) * scope[:, :, None]  # (B, S, G, 2, r)
        z = z.view(batch, tokens, sites, slots)  # (B, S, G, K)
    return torch.einsum("bsgk,bgko->bgso", z, b_sel.to(z.dtype))  # (B, G, S, d_out)


def selection_counts(routing: Routing, pool_index: Tensor, num_stacked: int, E: int) -> Tensor:
    """(G, T, 2 [A, B], 2 [v, t], E) counts of selected factors, for routing statistics (paper Fig. 5)."""
    sites = routing.a_idx.shape[1]
    site = torch.arange(sites, device=pool_index.device)[None, :, None, None]  # (1, G, 1, 1)
    modality = torch.arange(2, device=pool_index.device)[None, None, :, None]  # (1, 1, 2, 1)
    base = ((site * num_stacked + pool_index[:, None, None, None]) * 2 + modality) * E  # (B, G, 2, 1)
    size = sites * num_stacked * 2 * E
    counts = [
        torch.bincount((base + idx).flatten(), minlength=size).view(sites, num_stacked, 2, E)
        for idx in (routing.a_idx, routing.b_idx)
    ]
    return torch.stack(counts, dim=2)  # (G, T, 2, 2, E)
