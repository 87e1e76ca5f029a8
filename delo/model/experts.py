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
class Routing:
    """Selections of one site for both modalities; slot i pairs the i-th best A with the i-th best B."""

    a_idx: Tensor  # (B, 2, r) long, by descending p_A
    b_idx: Tensor  # (B, 2, r) long, by descending s_B
    gamma: Tensor | None  # (B, 2, r) slot gates; None means all ones without gradient (hard gate)


def route(
    q_hat: Tensor, w_a: Tensor, w_b: Tensor, m_map: Tensor, pool_index: Tensor, r: int, gate: str
) -> Routing:
    """Top-r selection of A and B factors (method.md §5, steps 1-2).

    q_hat: (B, 2, d_in) routing query per pool; w_a, w_b: (T, 2, E, d_in); m_map: (T, 2, E, E);
    pool_index: (B,) long, each sample's task in the stacked T.
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {GATES}")
    rows = torch.arange(q_hat.shape[0], device=q_hat.device)
    # Hard routing is the paper's literal form: no router or map gradient at all.
    with torch.set_grad_enabled(torch.is_grad_enabled() and gate != "hard"):
        logits_a = torch.einsum("bmd,tmed->btme", q_hat, w_a)[rows, pool_index]  # (B, T, 2, E) -> (B, 2, E)
        logits_b = torch.einsum("bmd,tmed->btme", q_hat, w_b)[rows, pool_index]  # (B, 2, E)
        p_a = logits_a.softmax(dim=-1)
        top_a, a_idx = p_a.topk(r, dim=-1)  # (B, 2, r), sorted descending
        g_a = torch.zeros_like(p_a).scatter_(-1, a_idx, 1.0)  # (B, 2, E) binary top-r mask
        if gate == "ste":
            # Forward value exactly unchanged; the gradient reaches W_A through M's term.
            g_a = g_a + (p_a - p_a.detach())
        m_sel = m_map[pool_index]  # (T, 2, E, E) -> (B, 2, E, E)
        compat = torch.einsum("bme,bmef->bmf", g_a, m_sel)  # (B, 2, E): g_A M per sample and modality
        s_b = logits_b.softmax(dim=-1) + compat.softmax(dim=-1)  # (B, 2, E)
        top_b, b_idx = s_b.topk(r, dim=-1)  # (B, 2, r)
    if gate == "hard":
        return Routing(a_idx, b_idx, None)
    if gate == "ste":
        # Straight-through: exactly 1 forward, d(gamma)/d(score) = 1 on the selected slots.
        gamma = (1.0 + (top_a - top_a.detach())) * (1.0 + (top_b - top_b.detach()))
    else:
        # Scores renormalised over the r selected, scaled by r so that uniform scores give gamma = 1.
        gamma = (r * top_a / top_a.sum(-1, keepdim=True)) * (r * top_b / top_b.sum(-1, keepdim=True))
    return Routing(a_idx, b_idx, gamma)


def gather_factors(
    a: Tensor, b: Tensor, routing: Routing, pool_index: Tensor, table_index: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-sample selected factors of both modalities, flattened into 2r slots (vision slots first).

    a: (T, P, E, d_in); b: (T, P, E, d_out); table_index: (2,) the table each modality reads.
    Returns A_sel (B, 2r, d_in), B_sel (B, 2r, d_out).
    """
    task = pool_index[:, None, None]  # (B, 1, 1)
    table = table_index[None, :, None]  # (1, 2, 1)
    a_sel = a[task, table, routing.a_idx]  # (B, 2, r, d_in)
    b_sel = b[task, table, routing.b_idx]  # (B, 2, r, d_out)
    return a_sel.flatten(1, 2), b_sel.flatten(1, 2)


def slot_weights(routing: Routing, scale: float, batch: int, r: int, device, dtype) -> Tensor:
    """(B, 2r) per-slot multiplier s * gamma_i."""
    if routing.gamma is None:
        return torch.full((batch, 2 * r), scale, device=device, dtype=dtype)
    return routing.gamma.flatten(1) * scale  # (B, 2, r) -> (B, 2r)


def compose_delta(
    x: Tensor, a_sel: Tensor, b_sel: Tensor, weight: Tensor, scope: Tensor | None = None
) -> Tensor:
    """Delta = sum over slots k of weight_k * b_k (a_k . x), never forming a d_out x d_in matrix (method.md §5).

    x: (B, S, d_in); a_sel: (B, K, d_in); b_sel: (B, K, d_out); weight: (B, K); scope: None or (1, S, 2, 1)
    switching the vision (first K/2) and text (last K/2) slots per token. Returns (B, S, d_out).
    """
    z = torch.einsum("bsd,bkd->bsk", x, a_sel)  # (B, S, K): a_k . x per token
    z = z * weight[:, None, :]  # (B, S, K)
    if scope is not None:
        batch, tokens, slots = z.shape
        z = z.view(batch, tokens, 2, slots // 2) * scope  # (B, S, 2, r)
        z = z.view(batch, tokens, slots)  # (B, S, K)
    return torch.einsum("bsk,bko->bso", z, b_sel)  # (B, S, d_out)


def selection_counts(routing: Routing, pool_index: Tensor, num_stacked: int, E: int) -> Tensor:
    """(T, 2 [A, B], 2 [v, t], E) counts of selected factors, for routing statistics (paper Fig. 5)."""
    modality = torch.arange(2, device=pool_index.device)[None, :, None]  # (1, 2, 1)
    base = (pool_index[:, None, None] * 2 + modality) * E  # (B, 2, 1): flat (task, modality) offset
    counts = [
        torch.bincount((base + idx).flatten(), minlength=num_stacked * 2 * E).view(num_stacked, 2, E)
        for idx in (routing.a_idx, routing.b_idx)
    ]
    return torch.stack(counts, dim=1)  # (T, 2, 2, E)
