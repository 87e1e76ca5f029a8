"""Every method switch the paper leaves open does what its docstring says (docs/method-choices.md)."""

import math

import pytest
import torch
from test_losses import _batch, _model

from delo.config import load_config
from delo.methods.delo.config import LossConfig
from delo.methods.delo.diagnostics import proxy_only_share, selection_entropy, unchanged_share
from delo.methods.delo.experts import (
    FactorPool,
    compose_delta,
    gather_factors,
    route,
    selected_rows,
    slot_weights,
    stack_pools,
)
from delo.methods.delo.loss import alignment_loss, compute_loss, consistency_loss, proxy_inputs
from delo.train import make_optimizer

E, D_IN, D_OUT = 4, 3, 2


def _hand_pool(entry_rank: int = 1) -> FactorPool:
    """Routers that make p_A rank the factors 3 > 1 > 2 > 0 and s_B rank 0 > 2 > ... for q = e_0 (both modalities)."""
    pool = FactorPool(D_IN, D_OUT, E, entry_rank=entry_rank)
    with torch.no_grad():
        pool.W_A.zero_()
        pool.W_A[:, :, 0] = torch.tensor([0.0, 2.0, 1.0, 3.0])
        pool.W_B.zero_()
        pool.W_B[:, :, 0] = torch.tensor([9.0, 0.0, 5.0, 1.0])
        pool.M.zero_()  # uniform compatibility term: s_B order set by W_B alone
        pool.A.copy_(torch.arange(pool.A.numel(), dtype=torch.float).view_as(pool.A) / 10)
        pool.B.copy_(torch.arange(pool.B.numel(), dtype=torch.float).view_as(pool.B) / 7)
    return pool


def _q(batch: int = 1) -> torch.Tensor:
    q = torch.zeros(batch, 2, D_IN)
    q[..., 0] = 1.0
    return q


# ---------------------------------------------------------------------------------------------------------- pairing


def test_pairing_rank_pairs_by_score_and_index_pairs_by_factor_index():
    stacked = stack_pools([[_hand_pool()]])
    index = torch.zeros(1, dtype=torch.long)
    rank = route(_q(), stacked, index, 2, "weighted", "rank")
    assert rank.a_idx[0, 0].tolist() == [[3, 1], [3, 1]] and rank.b_idx[0, 0].tolist() == [[0, 2], [0, 2]]
    by_index = route(_q(), stacked, index, 2, "weighted", "index")
    assert by_index.a_idx[0, 0].tolist() == [[1, 3], [1, 3]] and by_index.b_idx[0, 0].tolist() == [
        [0, 2],
        [0, 2],
    ]
    # slot 0 now pairs a_1 with b_0 (rank pairing: a_3 with b_0); each slot keeps its own factors' scores
    p_a = torch.tensor([0.0, 2.0, 1.0, 3.0]).softmax(0)
    s_b = torch.tensor([9.0, 0.0, 5.0, 1.0]).softmax(0) + 0.25

    def gamma(a, b):
        return (2 * p_a[a] / p_a[[1, 3]].sum()) * (2 * s_b[b] / s_b[[0, 2]].sum())

    torch.testing.assert_close(by_index.gamma[0, 0, 0], torch.stack([gamma(1, 0), gamma(3, 2)]))
    torch.testing.assert_close(rank.gamma[0, 0, 0], torch.stack([gamma(3, 0), gamma(1, 2)]))


def test_index_pairing_is_unchanged_when_scores_reorder_within_the_selection():
    pool = _hand_pool()
    stacked = stack_pools([[pool]])
    index = torch.zeros(1, dtype=torch.long)
    before = route(_q(), stacked, index, 2, "hard", "index")
    with torch.no_grad():
        pool.W_A[:, 1, 0] = 4.0  # factor 1 now outranks factor 3; same selected set
    after = route(_q(), stack_pools([[pool]]), index, 2, "hard", "index")
    assert torch.equal(before.a_idx, after.a_idx)
    assert route(_q(), stack_pools([[pool]]), index, 2, "hard", "rank").a_idx[0, 0, 0].tolist() == [1, 3]


def test_compat_pairing_gives_each_selected_a_the_b_its_map_row_prefers():
    pool = _hand_pool()
    with torch.no_grad():
        pool.W_B.zero_()  # B routers uniform: the map alone decides
        pool.M[:] = 0.0
        for a, b in ((3, 1), (1, 3), (2, 0), (0, 2)):
            pool.M[:, a, b] = 8.0  # a_3 -> b_1, a_1 -> b_3
    stacked = stack_pools([[pool]])
    index = torch.zeros(1, dtype=torch.long)
    routing = route(_q(), stacked, index, 2, "weighted", "compat")
    assert routing.a_idx[0, 0].tolist() == [[3, 1], [3, 1]]
    assert routing.b_idx[0, 0].tolist() == [[1, 3], [1, 3]]
    # both slots prefer b_1: the second slot may not take it again and gets its next best
    with torch.no_grad():
        pool.M[:, 1, 3] = 0.0
        pool.M[:, 1, 1] = 8.0
    taken = route(_q(), stack_pools([[pool]]), index, 2, "weighted", "compat")
    assert taken.b_idx[0, 0, 0, 0] == 1 and taken.b_idx[0, 0, 0, 1] != 1
    # the map gets gradient through the slot gates
    pool.zero_grad()
    routing = route(_q(), stack_pools([[pool]]), index, 2, "ste", "compat")
    routing.gamma.sum().backward()
    assert pool.M.grad is not None and pool.M.grad[:, 3].abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------- entry_rank


def test_rank_r_entries_layout_and_delta():
    rho = 2
    pool = _hand_pool(entry_rank=rho)
    assert pool.A.shape == (2, E, rho, D_IN) and pool.B.shape == (2, E, rho, D_OUT)
    assert pool.M.shape == (2, rho, D_IN, E) and pool.W_A_bias.shape == pool.W_B_bias.shape == (2, E)
    stacked = stack_pools([[pool]])
    # the effective map: row e is <A_e, M> (r x d_in contraction)
    expected_map = torch.einsum("mejc,mjcf->mef", pool.A, pool.M)
    torch.testing.assert_close(stacked.m_map[0, 0], expected_map)
    index = torch.zeros(1, dtype=torch.long)
    routing = route(_q(), stacked, index, 2, "hard")
    a_sel, b_sel = gather_factors(stacked, routing, index)
    assert a_sel.shape == (1, 2 * 2 * rho, D_IN) and b_sel.shape == (1, 1, 2 * 2 * rho, D_OUT)
    x = torch.randn(1, 5, D_IN)
    delta = compose_delta(x, a_sel, b_sel, slot_weights(routing, 0.5, rho))[0, 0]  # (S, d_out)
    expected = torch.zeros(5, D_OUT)
    for m in range(2):
        for i in range(2):
            a_e, b_e = pool.A[m, routing.a_idx[0, 0, m, i]], pool.B[m, routing.b_idx[0, 0, m, i]]  # (rho, d)
            expected += 0.5 * (x[0] @ a_e.T) @ b_e  # sum_j b_ej (a_ej . x)
    torch.testing.assert_close(delta, expected.detach())


def test_router_bias_enters_the_logits():
    pool = _hand_pool(entry_rank=2)
    with torch.no_grad():
        pool.W_A_bias[:, 0] = 10.0  # factor 0 now wins for both modalities
    routing = route(_q(), stack_pools([[pool]]), torch.zeros(1, dtype=torch.long), 2, "hard")
    assert routing.a_idx[0, 0, :, 0].tolist() == [0, 0]


def test_rank_r_model_trains_its_entries():
    torch.manual_seed(0)
    model = _model(entry_rank="r", r=2)
    pool = model.sites[0].pools[0]
    assert pool.A.shape[2] == 2
    before = {n: p.detach().clone() for n, p in pool.named_parameters()}
    compute_loss(model, _batch(), 0, LossConfig()).total.backward()
    for name, p in pool.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    torch.optim.SGD(model.task_parameters(0), lr=0.1).step()
    assert all(not torch.equal(before[n], p) for n, p in pool.named_parameters())


# ---------------------------------------------------------------------------------------------------------- scale, init


@pytest.mark.parametrize("scale, expected", [("alpha_over_r", 2.0), ("alpha", 8.0)])
def test_scale(scale, expected):
    model = _model(scale=scale, alpha=8.0, r=4, E=6)
    assert all(site.scale == expected for site in model.sites)
    routing = route(_q(), stack_pools([[_hand_pool()]]), torch.zeros(1, dtype=torch.long), 2, "hard")
    assert torch.equal(slot_weights(routing, expected), torch.full((1, 4), expected))


def test_a_init():
    torch.manual_seed(0)
    kaiming = FactorPool(400, 2, 16)
    assert kaiming.A.abs().max() <= 1 / math.sqrt(400)
    gaussian = FactorPool(400, 2, 16, a_init="gaussian", a_init_std=0.5)
    a = gaussian.A.detach()
    assert abs(float(a.std()) - 0.5) < 0.02 and abs(float(a.mean())) < 0.02
    assert torch.count_nonzero(gaussian.B) == 0  # identity at init either way
    model = _model(a_init="gaussian", a_init_std=2.0)
    assert abs(float(model.sites[0].pools[0].A.detach().std()) - 2.0) < 0.6


# ---------------------------------------------------------------------------------------------------------- L_con


def test_proxy_inputs_route_as_inference_does():
    batch = {"x": torch.arange(4), "missing": torch.tensor([0, 1, 0, 2])}
    complete = batch["missing"] == 0
    swap, guide = proxy_inputs(batch, complete, "swap")
    assert swap["x"].tolist() == [0, 2] and guide.tolist() == [[1, 0], [1, 0]]
    doubled, guide = proxy_inputs(batch, complete, "inference")
    assert doubled["x"].tolist() == [0, 2, 0, 2]
    assert guide.tolist() == [
        [0, 0],
        [0, 0],
        [1, 1],
        [1, 1],
    ]  # (q_v, q_v) as text missing, (q_t, q_t) as image


def test_inference_proxy_is_the_mean_of_the_two_inference_routings():
    model = _model()
    batch = _batch()
    torch.manual_seed(0)
    out = compute_loss(model, batch, 0, LossConfig(con_proxy="inference"))
    torch.manual_seed(0)
    true = model(batch, "train").scores[:, :3]
    complete = batch["missing"] == 0
    subset = {k: v[complete] for k, v in batch.items()}
    terms = []
    for code in (1, 2):  # the routing a complete sample would get if text / the image were missing
        routed = model(dict(subset, missing=torch.full_like(subset["missing"], code)), "task_aware").scores[
            :, :3
        ]
        terms.append(consistency_loss(true[complete], routed, False))
    torch.testing.assert_close(out.con, (terms[0] + terms[1]) / 2, atol=1e-5, rtol=1e-4)


def _factor_grads(model, loss):
    pools = [site.pools[0] for site in model.sites]
    return torch.autograd.grad(loss, [p for pool in pools for p in (pool.A, pool.B, pool.W_A, pool.M)])


def test_con_grad_main_rows_reaches_only_main_selected_rows():
    model = _model()
    batch = _batch()
    torch.manual_seed(0)
    masked = compute_loss(model, batch, 0, LossConfig(con_grad="main_rows"), record_rows=True)
    torch.manual_seed(0)
    full = compute_loss(model, batch, 0, LossConfig(con_grad="all"), record_rows=True)
    assert torch.equal(masked.con, full.con)  # forward values unchanged
    g_masked, g_full = _factor_grads(model, masked.con), _factor_grads(model, full.con)
    lead = model.sites[0].group.sites
    keep = masked.rows_main[lead[0].site]  # (2 [A, B], G, P, E)
    outside = 0
    for g, _site in enumerate(lead):
        for j, _name in enumerate(("A", "B")):
            mask = keep[j, g]  # (P, E)
            gm, gf = g_masked[4 * g + j], g_full[4 * g + j]
            assert torch.count_nonzero(gm[~mask]) == 0
            torch.testing.assert_close(gm[mask], gf[mask])
            outside += int(torch.count_nonzero(gf[~mask]))
        for j in (2, 3):  # routers and map: L_con's gradient as before
            torch.testing.assert_close(g_masked[4 * g + j], g_full[4 * g + j])
    assert outside > 0  # the proxy pass did gather rows the main pass did not


# ---------------------------------------------------------------------------------------------------------- L_align


def test_align_layers():
    q0 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # cos 0 -> 1 - cos = 1
    q1 = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])  # cos 1 -> 0
    complete = torch.tensor([True])
    assert float(alignment_loss([q0, q1], complete, "all")) == pytest.approx(0.5)
    assert float(alignment_loss([q0, q1], complete, "first")) == pytest.approx(1.0)
    assert float(alignment_loss([q0, q1], complete, "last")) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------- routers' lr


def test_router_lr_mult_gets_its_own_group_under_the_schedule():
    model = _model()
    cfg = load_config(overrides=["train.lr=0.01", "train.router_lr_mult=0.1", "train.warmup_frac=0.5"])
    opt, sched = make_optimizer(model, 0, cfg, total=4)
    factors, routers = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in routers["params"]} == {"W_A", "W_B", "M"}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in factors["params"]} == {"A", "B", "weight", "bias"}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.task_parameters(0)}
    for step in range(4):  # warm-up 2 steps, then cosine to 0: both groups follow the same factor
        factor = [0.5, 1.0, 1.0, 0.5][step]
        assert factors["lr"] == pytest.approx(0.01 * factor) and routers["lr"] == pytest.approx(
            0.001 * factor
        )
        opt.step()
        sched.step()


# ---------------------------------------------------------------------------------------------------------- diagnostics


def test_diagnostic_measures():
    idx = torch.tensor([[[[0, 1], [0, 1]]], [[[0, 1], [2, 3]]]])  # (B=2, G=1, 2, r=2)
    entropy = selection_entropy(idx, 4)
    assert entropy[0] == pytest.approx(math.log(2) / math.log(4))  # vision: only 0 and 1, equally
    assert entropy[1] == pytest.approx(1.0)  # text: all four equally
    moved = torch.tensor([[[[1, 0], [0, 2]]], [[[0, 1], [2, 3]]]])
    assert unchanged_share(moved, idx).tolist() == [1.0, 0.5]  # order within a set does not count
    routing = type("R", (), {"a_idx": idx, "b_idx": moved})
    rows = selected_rows(routing, torch.tensor([0, 1]), 4)  # (2, G, P, E)
    assert rows[0, 0].tolist() == [[True, True, False, False], [True, True, True, True]]
    main = {"s": torch.zeros(2, 1, 2, 4, dtype=torch.bool)}
    main["s"][:, :, 0, :2] = True
    proxy = {"s": torch.zeros(2, 1, 2, 4, dtype=torch.bool)}
    proxy["s"][0, 0, 0, 1:3] = True  # A: entries 1 (also main) and 2 (proxy only)
    assert proxy_only_share(main, proxy).tolist() == [1 / 8, 0.0]
