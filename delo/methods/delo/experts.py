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

    ``entry_rank`` 1 is the paper's layout: rank-one entries (A: P x E x d_in), routers without bias, an E x E
    map M. ``entry_rank`` r > 1 is the authors' layout (method.md §12): rank-r entries (A: P x E x r x d_in),
    routers with bias, and a compatibility tensor M of r x d_in x E per modality whose contraction with each A
    entry gives that entry's row of the effective E x E map.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        E: int,
        shared_table: bool = False,
        entry_rank: int = 1,
        a_init: str = "kaiming",
        a_init_std: float = 1.0,
    ) -> None:
        super().__init__()
        tables = 1 if shared_table else 2
        inner = () if entry_rank == 1 else (entry_rank,)
        self.entry_rank = entry_rank
        self.A = nn.Parameter(torch.empty(tables, E, *inner, d_in))  # factors a_e
        self.B = nn.Parameter(
            torch.zeros(tables, E, *inner, d_out)
        )  # factors b_e; zero -> identity at step 0
        self.W_A = nn.Parameter(torch.empty(2, E, d_in))  # A-router
        self.W_B = nn.Parameter(torch.empty(2, E, d_in))  # B-router
        if entry_rank == 1:
            self.M = nn.Parameter(torch.empty(2, E, E))  # compatibility map (Kaiming-uniform is ours)
            _kaiming_rows(self.M.data)
        else:
            self.W_A_bias = nn.Parameter(torch.zeros(2, E))
            self.W_B_bias = nn.Parameter(torch.zeros(2, E))
            self.M = nn.Parameter(torch.empty(2, entry_rank, d_in, E))  # r x d_in x E per modality
            # As a Linear(r * d_in -> E) would be initialised: bound 1 / sqrt(r * d_in).
            bound = 1.0 / math.sqrt(entry_rank * d_in)
            nn.init.uniform_(self.M.data, -bound, bound)
        for weight in (self.W_A, self.W_B):
            _kaiming_rows(weight.data)
        if a_init == "gaussian":
            nn.init.normal_(self.A.data, std=a_init_std)
        else:
            _kaiming_rows(self.A.data)
        # The factor table each modality's routing reads: (0, 1), or (0, 0) for one shared table.
        self.register_buffer("table_index", torch.tensor([0, tables - 1]), persistent=False)

    def factor_parameters(self) -> list[nn.Parameter]:
        return [self.A, self.B]

    def router_parameters(self) -> list[nn.Parameter]:
        """Routers (with their biases in the authors' layout) and the compatibility map."""
        return [p for p in self.parameters() if all(p is not f for f in (self.A, self.B))]


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

    a: Tensor  # (G, T, P, E, rho, d_in); rho = entry rank (1 for the paper's rank-one entries)
    b: Tensor  # (G, T, P, E, rho, d_out)
    routers: Tensor  # (2 [W_A, W_B], G, T, 2, E, d_in)
    router_bias: Tensor | None  # (2 [W_A, W_B], G, T, 2, E), authors' layout only
    m_map: Tensor  # (G, T, 2, E, E): the effective A->B compatibility map
    table_index: Tensor  # (2,) long: the factor table each modality reads


def stack_pools(grid: list[list[FactorPool]], keep: Tensor | None = None) -> StackedPools:
    """grid[g][t]: pool of site g for the t-th stacked task. One copy per role; small next to activations.

    keep: optional (2 [A, B], G, P, E) bool for a single stacked task: entries outside it are detached, so no
    gradient of this forward reaches them (``loss.con_grad=main_rows``).
    """
    sites, tasks = len(grid), len(grid[0])
    flat = [pool for row in grid for pool in row]
    a = torch.stack([p.A for p in flat]).unflatten(0, (sites, tasks))  # (G, T, P, E, [rho,] d_in)
    b = torch.stack([p.B for p in flat]).unflatten(0, (sites, tasks))  # (G, T, P, E, [rho,] d_out)
    if flat[0].entry_rank == 1:
        a, b = a.unsqueeze(-2), b.unsqueeze(-2)  # (G, T, P, E, 1, d): rank-one entries
    if keep is not None:
        if tasks != 1:
            raise ValueError("row masks apply to a single stacked task (train / proxy passes)")
        a = torch.where(keep[0][:, None, :, :, None, None], a, a.detach())  # (G, 1, P, E, rho, d_in)
        b = torch.where(keep[1][:, None, :, :, None, None], b, b.detach())  # (G, 1, P, E, rho, d_out)
    table_index = flat[0].table_index
    m = torch.stack([p.M for p in flat]).unflatten(
        0, (sites, tasks)
    )  # (G, T, 2, E, E) | (G, T, 2, rho, d, E)
    if flat[0].entry_rank == 1:
        m_map = m
        bias = None
    else:
        # Authors' layout: row e of the map is <A_e, M> over the entry's r x d_in values.
        m_map = torch.einsum("gtmejc,gtmjcf->gtmef", a[:, :, table_index], m)  # (G, T, 2, E, E)
        bias = torch.stack([p.W_A_bias for p in flat] + [p.W_B_bias for p in flat]).unflatten(
            0, (2, sites, tasks)
        )
    return StackedPools(
        a=a,
        b=b,
        # W_A and W_B stacked together: one contraction with the queries gives both logits.
        routers=torch.stack([p.W_A for p in flat] + [p.W_B for p in flat]).unflatten(0, (2, sites, tasks)),
        router_bias=bias,  # (2, G, T, 2, E) | None
        m_map=m_map,
        table_index=table_index,
    )


@dataclass
class Routing:
    """Selections for G sites and both modalities; slot i pairs a_idx[..., i] with b_idx[..., i]."""

    a_idx: Tensor  # (B, G, 2, r) long, by descending p_A (``pairing=index``: ascending factor index)
    b_idx: Tensor  # (B, G, 2, r) long, by descending s_B (``pairing=index``: ascending factor index)
    gamma: Tensor | None  # (B, G, 2, r) slot gates; None means all ones without gradient (hard gate)


PAIRINGS = ("rank", "index", "compat")


def _by_index(scores: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder a top-r selection (values, indices) by ascending factor index."""
    idx, order = idx.sort(dim=-1)
    return scores.gather(-1, order), idx


def _pair_by_map(logits_b: Tensor, m_sel: Tensor, a_idx: Tensor) -> tuple[Tensor, Tensor]:
    """(scores, indices) (B, G, 2, r) of the B factor chosen for each selected A slot, best A first.

    logits_b: (B, G, 2, E) B-router logits; m_sel: (G, B, 2, E, E) each sample's map; a_idx: (B, G, 2, r).
    """
    m_rows = m_sel.permute(1, 0, 2, 3, 4)  # (B, G, 2, E, E): row e scores every b for a_e
    rows = m_rows.gather(3, a_idx[..., None].expand(*a_idx.shape, m_rows.shape[-1]))  # (B, G, 2, r, E)
    slot_scores = logits_b.softmax(dim=-1)[..., None, :] + rows.softmax(dim=-1)  # (B, G, 2, r, E)
    taken = torch.zeros_like(logits_b, dtype=torch.bool)  # (B, G, 2, E)
    values, picks = [], []
    for i in range(a_idx.shape[-1]):  # r is small (<= 8): one masked argmax per slot
        value, pick = slot_scores[..., i, :].masked_fill(taken, -torch.inf).max(dim=-1)  # (B, G, 2)
        taken = taken.scatter(-1, pick[..., None], True)
        values.append(value)
        picks.append(pick)
    return torch.stack(values, dim=-1), torch.stack(picks, dim=-1)


def route(
    q_hat: Tensor, pools: StackedPools, pool_index: Tensor, r: int, gate: str, pairing: str = "rank"
) -> Routing:
    """Top-r selection of A and B factors (method.md §5, steps 1-3).

    q_hat: (B, 2, d_in) routing query per modality pool; pool_index: (B,) each sample's task in the stack.
    pairing ``rank``: slot i holds the i-th best A and the i-th best B (paper); ``index``: the selected A and
    B sets each sorted by factor index, so slot i holds the i-th smallest selected A and B index; ``compat``:
    slot i's B is chosen for slot i's A, by softmax(B router) + softmax(M[a_i, :]), greedily from the best A
    down and without repeating a B, so the compatibility map decides which b goes with which a.
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {GATES}")
    if pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {pairing!r}; expected one of {PAIRINGS}")
    rows = torch.arange(q_hat.shape[0], device=q_hat.device)
    # Hard routing is the paper's literal form: no router or map gradient at all.
    with torch.set_grad_enabled(torch.is_grad_enabled() and gate != "hard"):
        logits = torch.einsum("bmd,ngtmed->nbtgme", q_hat, pools.routers)  # (2, B, T, G, 2, E)
        if pools.router_bias is not None:
            logits = logits + pools.router_bias.permute(0, 2, 1, 3, 4)[:, None]  # (2, 1, T, G, 2, E)
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
        if pairing == "compat":
            top_b, b_idx = _pair_by_map(logits_b, m_sel, a_idx)
        if pairing == "index":
            top_a, a_idx = _by_index(top_a, a_idx)
            top_b, b_idx = _by_index(top_b, b_idx)
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
    """Per-sample selected factors; slots ordered (site, modality [vision first], selected entry, entry row).

    Returns A_sel (B, G*2r*rho, d_in) and B_sel (B, G, 2r*rho, d_out): row j of a selected A entry pairs with row
    j of its slot's B entry (rho = 1 for rank-one entries).
    """
    sites = pools.a.shape[0]
    site = torch.arange(sites, device=pool_index.device)[None, :, None, None]  # (1, G, 1, 1)
    task = pool_index[:, None, None, None]  # (B, 1, 1, 1)
    table = pools.table_index[None, None, :, None]  # (1, 1, 2, 1)
    a_sel = pools.a[site, task, table, routing.a_idx]  # (B, G, 2, r, rho, d_in)
    b_sel = pools.b[site, task, table, routing.b_idx]  # (B, G, 2, r, rho, d_out)
    return a_sel.flatten(1, 4), b_sel.flatten(2, 4)


def slot_weights(routing: Routing, scale: float, entry_rank: int = 1) -> Tensor:
    """(B, G*2r*rho) per-slot multiplier s * gamma_i, repeated over the rho rows of a rank-rho entry."""
    shape = (*routing.a_idx.shape, entry_rank)  # (B, G, 2, r, rho)
    if routing.gamma is None:
        return torch.full(shape, scale, device=routing.a_idx.device).flatten(1)
    return (routing.gamma[..., None].expand(shape) * scale).flatten(1)  # (B, G, 2, r, rho) -> (B, G*2r*rho)


def compose_delta(
    x: Tensor, a_sel: Tensor, b_sel: Tensor, weight: Tensor, scope: Tensor | None = None
) -> Tensor:
    """Delta = sum over slots of weight * b (a . x), never forming a d_out x d_in matrix (method.md §5).

    x: (B, S, d_in); a_sel: (B, G*K, d_in); b_sel: (B, G, K, d_out) with K = 2r*rho (vision slots, then text);
    weight: (B, G*K); scope: None, or (1, S, 2, 1) switching vision / text slots per token.
    Returns (B, G, S, d_out): one delta per site.
    """
    batch, tokens = x.shape[:2]
    sites, slots = b_sel.shape[1:3]
    z = torch.einsum("bsd,bkd->bsk", x, a_sel)  # (B, S, G*K): a . x per token and slot
    z = z * weight[:, None, :].to(z.dtype)  # (B, S, G*K)
    z = z.view(batch, tokens, sites, slots)  # (B, S, G, K)
    if scope is not None:
        z = z.view(batch, tokens, sites, 2, slots // 2) * scope[:, :, None]  # (B, S, G, 2, r*rho)
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


def selected_rows(routing: Routing, table_index: Tensor, E: int) -> Tensor:
    """(2 [A, B], G, P, E) bool: the pool entries a single-task forward gathered for any sample."""
    hits = []
    for idx in (routing.a_idx, routing.b_idx):
        one_hot = torch.zeros(*idx.shape[:-1], E, device=idx.device).scatter_(-1, idx, 1.0)  # (B, G, 2, E)
        per_modality = one_hot.amax(dim=0)  # (G, 2, E)
        tables = int(table_index.max()) + 1
        per_table = per_modality.new_zeros(per_modality.shape[0], tables, E)  # (G, P, E)
        per_table.index_add_(1, table_index, per_modality)  # modalities sharing a table add up
        hits.append(per_table > 0)
    return torch.stack(hits)  # (2, G, P, E)
