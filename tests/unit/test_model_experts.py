"""Pure tensor math of the factor pools: routing, gates, batched delta (method.md §2, §4, §5)."""

import math

import pytest
import torch

from delo.methods.delo.experts import (
    FactorPool,
    LoRAFactors,
    Routing,
    compose_delta,
    gather_factors,
    route,
    selection_counts,
    slot_weights,
    stack_pools,
)
from delo.vilt.context import guide_index

E, R, D_IN, D_OUT = 6, 3, 10, 7


def _pool_grid(sites=1, tasks=2, shared=False, seed=0):
    """grid[g][t]: FactorPool of site g, task t, with non-zero B so the delta is not trivially zero."""
    torch.manual_seed(seed)
    grid = [[FactorPool(D_IN, D_OUT, E, shared_table=shared) for _ in range(tasks)] for _ in range(sites)]
    for row in grid:
        for pool in row:
            torch.nn.init.normal_(pool.B)
    return grid


def test_init_follows_the_table():
    pool = FactorPool(D_IN, D_OUT, E)
    assert pool.A.shape == (2, E, D_IN) and pool.B.shape == (2, E, D_OUT)
    assert pool.W_A.shape == pool.W_B.shape == (2, E, D_IN) and pool.M.shape == (2, E, E)
    assert torch.count_nonzero(pool.B) == 0
    # Kaiming-uniform as nn.Linear: bound 1/sqrt(fan_in) per modality table, fan_in = d_in (or E for M).
    assert pool.A.abs().max() <= 1 / math.sqrt(D_IN) and pool.A.abs().max() > 0.5 / math.sqrt(D_IN)
    assert pool.M.abs().max() <= 1 / math.sqrt(E) and pool.M.abs().max() > 0.5 / math.sqrt(E)
    assert pool.table_index.tolist() == [0, 1]
    shared = FactorPool(D_IN, D_OUT, E, shared_table=True)
    assert shared.A.shape == (1, E, D_IN) and shared.table_index.tolist() == [0, 0]
    lora = LoRAFactors(D_IN, D_OUT, R)
    assert lora.A.shape == (R, D_IN) and torch.count_nonzero(lora.B) == 0


def test_selection_follows_method_steps():
    pool = _pool_grid(tasks=1)[0][0]
    stacked = stack_pools([[pool]])
    q = torch.randn(5, 2, D_IN)
    index = torch.zeros(5, dtype=torch.long)
    routing = route(q, stacked, index, R, "ste")
    a_idx, b_idx = routing.a_idx[:, 0], routing.b_idx[:, 0]  # the only site: (B, 2, r)
    p_a = torch.einsum("bmd,med->bme", q, pool.W_A).softmax(-1)
    top_a = p_a.topk(R, dim=-1)
    assert torch.equal(a_idx, top_a.indices)
    assert (p_a.gather(-1, a_idx).diff(dim=-1) <= 0).all()  # descending order
    g_a = torch.zeros_like(p_a).scatter(-1, a_idx, 1.0)
    g_a_m = (g_a.unsqueeze(-2) @ pool.M).squeeze(-2)  # (B, 2, 1, E) @ (2, E, E) -> (B, 2, E)
    s_b = torch.einsum("bmd,med->bme", q, pool.W_B).softmax(-1) + g_a_m.softmax(-1)
    assert torch.equal(b_idx, s_b.topk(R, dim=-1).indices)
    assert torch.equal(routing.gamma, torch.ones(5, 1, 2, R))  # ste: exactly 1 forward
    hard = route(q, stacked, index, R, "hard")
    assert hard.gamma is None
    assert torch.equal(hard.a_idx, routing.a_idx) and torch.equal(hard.b_idx, routing.b_idx)
    weighted = route(q, stacked, index, R, "weighted")
    p_hat = top_a.values / top_a.values.sum(-1, keepdim=True)
    s_top = s_b.topk(R, dim=-1).values
    expected = (R * p_hat) * (R * s_top / s_top.sum(-1, keepdim=True))
    torch.testing.assert_close(weighted.gamma[:, 0], expected)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("own_tokens", [False, True])
def test_batched_delta_equals_sum_of_outer_products(shared, own_tokens):
    grid = _pool_grid(sites=2, tasks=3, shared=shared)
    stacked = stack_pools(grid)
    batch, tokens, text_len, scale = 4, 9, 5, 8.0 / R
    x = torch.randn(batch, tokens, D_IN)
    q = torch.randn(batch, 2, D_IN)
    index = torch.tensor([2, 0, 1, 2])  # mixed tasks in one batch
    routing = route(q, stacked, index, R, "weighted")
    a_sel, b_sel = gather_factors(stacked, routing, index)
    scope = None
    if own_tokens:
        is_image = (torch.arange(tokens) >= text_len).float()
        scope = torch.stack([is_image, 1 - is_image], -1)[None, :, :, None]
    delta = compose_delta(x, a_sel, b_sel, slot_weights(routing, scale), scope)
    assert delta.shape == (batch, 2, tokens, D_OUT)

    for b in range(batch):
        for g in range(2):
            pool = grid[g][int(index[b])]
            update = torch.zeros(tokens, D_OUT, D_IN)  # per-token d_out x d_in matrix, explicit on purpose
            for m in range(2):
                table = 0 if shared else m
                for i in range(R):
                    a = pool.A[table, routing.a_idx[b, g, m, i]]
                    bb = pool.B[table, routing.b_idx[b, g, m, i]]
                    outer = scale * routing.gamma[b, g, m, i] * torch.outer(bb, a)
                    # own_tokens: the vision delta on image tokens only, the text delta on text tokens only
                    on = torch.ones(tokens) if not own_tokens else scope[0, :, m, 0]
                    update += on[:, None, None] * outer
            expected = torch.einsum("soi,si->so", update, x[b])  # (S, d_out, d_in) x (S, d_in) -> (S, d_out)
            torch.testing.assert_close(delta[b, g], expected.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gate, has_grad", [("ste", True), ("weighted", True), ("hard", False)])
def test_router_gradient_by_gate(gate, has_grad):
    pool = _pool_grid(tasks=1)[0][0]
    stacked = stack_pools([[pool]])
    x, q, index = torch.randn(3, 4, D_IN), torch.randn(3, 2, D_IN), torch.zeros(3, dtype=torch.long)
    routing = route(q, stacked, index, R, gate)
    a_sel, b_sel = gather_factors(stacked, routing, index)
    compose_delta(x, a_sel, b_sel, slot_weights(routing, 2.0)).pow(2).sum().backward()
    for name in ("W_A", "W_B", "M"):
        grad = getattr(pool, name).grad
        if has_grad:
            assert grad is not None and grad.abs().sum() > 0, name
        else:
            assert grad is None, name
    assert pool.A.grad.abs().sum() > 0 and pool.B.grad.abs().sum() > 0


def test_guide_table():
    missing = torch.tensor([0, 1, 2])
    # columns: query routing the vision pool, query routing the text pool (0 = q_v, 1 = q_t)
    assert guide_index(missing, "train", "delo").tolist() == [[0, 1], [0, 0], [1, 1]]
    assert guide_index(missing, "agnostic", "unified_pool").tolist() == [[0, 1], [0, 0], [1, 1]]
    assert guide_index(missing, "train", "no_guide").tolist() == [[0, 1]] * 3
    assert guide_index(missing, "proxy", "delo").tolist() == [[1, 0]] * 3


def test_selection_counts():
    routing = Routing(
        a_idx=torch.tensor([[[0, 1], [2, 3]], [[1, 0], [3, 2]]])[:, None],  # (B=2, G=1, 2, r=2)
        b_idx=torch.tensor([[[4, 5], [0, 1]], [[4, 1], [0, 5]]])[:, None],
        gamma=None,
    )
    counts = selection_counts(routing, torch.tensor([0, 1]), num_stacked=2, E=6)
    assert counts.shape == (1, 2, 2, 2, 6)
    assert counts[0, 0, 0, 0].tolist() == [1, 1, 0, 0, 0, 0]  # task 0, A, vision
    assert counts[0, 1, 1, 1].tolist() == [1, 0, 0, 0, 0, 1]  # task 1, B, text
    assert int(counts.sum()) == 2 * 2 * 2 * 2
