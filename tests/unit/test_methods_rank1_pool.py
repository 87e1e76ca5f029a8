"""rank1_pool (docs/methods.md#rank1_pool): per-sample top-k routing from the [CLS] query, the AGO loss, frozen
earlier heads, task-state replay and the parameter count."""

import pytest
import torch
from _shared_experts import TASKS, build, make_batch, train_task


def _site_input(model, batch):
    """The input of the first adapted linear in a forward of ``batch`` (B, S, d)."""
    site, seen = model.sites[0], {}
    handle = site.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    model.pooled(batch)
    handle.remove()
    return seen["x"]


@pytest.mark.parametrize("query", ["site", "layer0"])
def test_selected_experts_change_with_the_input(query):
    model = build("rank1_pool", rank1_pool={"E": 12, "k": 3, "query": query})
    model.begin_task(0, 3, 0)
    site, masks, seen = model.sites[0], [], []
    handle = site.register_forward_hook(lambda m, args, out: seen.append(model.selection(m, args[0])[1]))
    with torch.no_grad():
        for seed in (1, 2):
            model._query = None
            model.pooled(make_batch(n=6, seed=seed))
            masks.append(seen[-1])
    handle.remove()
    for mask in masks:
        assert mask.shape == (6, 12) and bool((mask.sum(1) == 3).all())  # exactly k per sample
    assert not torch.equal(masks[0], masks[1])  # other inputs, other experts
    assert len({tuple(row.tolist()) for row in masks[0]}) > 1  # and per sample within a batch


def test_delta_is_the_selected_rank_one_experts():
    model = build("rank1_pool", rank1_pool={"E": 6, "k": 2, "gate": "hard"})
    model.begin_task(0, 3, 0)
    site = model.sites[0]
    with torch.no_grad():
        site.B.normal_()
    x = _site_input(model, make_batch(n=2))
    with torch.no_grad():
        _, mask = model.selection(site, x)
        expected = site.base_layer(x)
        for b in range(2):
            for i in mask[b].nonzero().flatten().tolist():
                expected[b] += site.scale * (x[b] @ site.A[i, 0])[:, None] * site.B[i, 0][None, :]
        assert torch.allclose(site(x), expected, atol=1e-5)


def test_ste_gate_trains_the_router_and_hard_does_not():
    for gate, router_moves in (("ste", True), ("hard", False)):
        model = build("rank1_pool", rank1_pool={"gate": gate})
        model.begin_task(0, 3, 0)
        with torch.no_grad():
            for site in model.sites:
                site.B.normal_()  # B = 0 at init would hide every router gradient
        model.train()
        model.training_loss(make_batch(), 0).total.backward()
        grad = model.sites[0].router_weight.grad
        assert (grad is not None and bool(grad.abs().sum() > 0)) is router_moves


def test_ago_is_exactly_zero_on_task_0_and_has_no_graph():
    model = build("rank1_pool")
    model.begin_task(0, 3, 0)
    model.train()
    out = model.training_loss(make_batch(), 0)
    assert out.parts["ago"].item() == 0.0 and not out.parts["ago"].requires_grad


def test_ago_moves_only_the_active_b_vectors_away_from_earlier_directions():
    model = build("rank1_pool", rank1_pool={"E": 6, "k": 2, "ago_top": 2})
    train_task(model, 0)
    assert all(site.prev_dirs.shape == (2, site.out_features) for site in model.sites)
    model.begin_task(1, *TASKS[1])
    model.train()
    model.pooled(make_batch(seed=7, task=1, offset=3))  # selection counts of task 1 so far
    site = model.sites[0]
    active = site.counts.topk(2).indices
    with torch.no_grad():  # a task-1 update that leans on the stored directions
        for s in model.sites:
            s.B[:, 0] += 0.5 * s.prev_dirs.sum(0)
    model.zero_grad(set_to_none=True)  # drop task 0's last gradients
    ago = model.regulariser(1)
    assert ago.item() > 0
    ago.backward()
    grad = site.B.grad[:, 0]  # (E, d_out)
    inactive = torch.ones(6, dtype=torch.bool)
    inactive[active] = False
    assert bool((grad[active].abs().sum(1) > 0).all())
    assert torch.count_nonzero(grad[inactive]) == 0
    assert site.A.grad is None and site.router_weight.grad is None
    before = ago.item()
    with torch.no_grad():
        for s in model.sites:
            s.B -= 1e-3 * s.B.grad
    assert model.regulariser(1).item() < before


def test_earlier_heads_stay_frozen_and_shared_experts_keep_training():
    model = build("rank1_pool")
    train_task(model, 0)
    head0 = {n: p.clone() for n, p in model.heads.heads[0].named_parameters()}
    b0 = model.sites[0].B.detach().clone()
    train_task(model, 1)
    for n, p in model.heads.heads[0].named_parameters():
        assert torch.equal(p, head0[n]) and not p.requires_grad
    assert not torch.equal(model.sites[0].B, b0)


def test_task_state_replay_predicts_identically():
    model = build("rank1_pool", rank1_pool={"query": "layer0"})
    states = []
    for k in range(2):
        train_task(model, k)
        states.append(model.task_state(k))
    fresh = build("rank1_pool", rank1_pool={"query": "layer0"})
    for k, state in enumerate(states):
        fresh.begin_task(k, *TASKS[k])
        fresh.load_task_state(k, state)
    fresh.eval()
    batch = make_batch(n=6, seed=99)
    a, b = model.predict(batch), fresh.predict(batch)
    # same tasks; scores to float rounding (CPU matmuls are not bitwise repeatable even on one model)
    assert torch.equal(a.task, b.task) and torch.allclose(a.scores, b.scores, atol=1e-6)
    assert torch.equal(a.scores.isinf(), b.scores.isinf())
    assert torch.equal(model.sites[0].prev_dirs, fresh.sites[0].prev_dirs)


def test_parameter_counts_closed_form():
    E, C = 12, 2
    model = build("rank1_pool", rank1_pool={"E": E})
    model.begin_task(0, 3, 0)
    model.begin_task(1, C, 3)
    d, sites = 32, 2 * 3  # tiny ViLT: hidden 32, 2 layers x (q, k, v)
    adapters = sites * (E * d + E * d + (E * d + E))  # A, B, router with bias
    counts = model.parameter_counts()
    assert counts["adapters_per_task"] == adapters
    assert counts["trainable"] == adapters + d * C + C
    backbone = sum(p.numel() for p in model.vilt.parameters()) - adapters
    assert counts["total"] == backbone + adapters + (d * 3 + 3) + (d * C + C)


def test_config_refuses_k_above_e():
    from delo.config import ModelConfig

    with pytest.raises(ValueError, match="must be <= E"):
        ModelConfig(method="rank1_pool", rank1_pool={"E": 4, "k": 5})
