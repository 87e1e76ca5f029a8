"""moe_lora and pass_moe (docs/methods.md#moe_lora, #pass_moe): the token-level MoE-LoRA, PAS-guided reweighting,
PAS-aware rank stabilisation, frozen earlier heads, task-state replay and the parameter counts."""

import pytest
import torch
from _shared_experts import TASKS, build, make_batch, train_task

from delo.methods.shared_experts.moe_lora import pathway_energy


def _site_input(model, batch):
    site, seen = model.sites[0], {}
    handle = site.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model.pooled(batch)
    handle.remove()
    return seen["x"]


def _pair(reweight="calibrate"):
    """moe_lora and pass_moe built and begun under the same seed: the same experts and routers."""
    plain, pas = build("moe_lora"), build("pass_moe", pass_moe={"reweight": reweight})
    for model in (plain, pas):
        torch.manual_seed(5)
        model.begin_task(0, 3, 0)
        with torch.no_grad():
            for site in model.sites:
                site.A.normal_(generator=torch.Generator().manual_seed(1))  # distinct PASs per expert
    return plain, pas


def test_delta_is_the_gated_sum_of_the_lora_experts():
    model = build("moe_lora")
    model.begin_task(0, 3, 0)
    site = model.sites[0]
    with torch.no_grad():
        site.B.normal_()
    x = _site_input(model, make_batch(n=2))
    with torch.no_grad():
        gates = model._gate(site, x, torch.zeros(0))  # (B, S, E)
        expected = site.base_layer(x)
        for e in range(site.E):
            expected += site.scale * gates[..., e, None] * (x @ site.A[e].T @ site.B[e])
        assert torch.allclose(site(x), expected, atol=1e-5)
        assert gates.shape == (2, x.shape[1], site.E) and torch.allclose(
            gates.sum(-1), torch.ones(2, x.shape[1])
        )


def test_reweighting_changes_the_routing_weights_of_plain_moe_lora():
    plain, pas = _pair()
    x = _site_input(plain, make_batch(n=3))
    with torch.no_grad():
        g_plain = plain._gate(plain.sites[0], x, torch.zeros(0))
        g_pas = pas._gate(pas.sites[0], x, torch.zeros(0))
        energy = pathway_energy(x, pas.sites[0].A)  # (B, S, E)
    assert torch.equal(plain.sites[0].router_weight, pas.sites[0].router_weight)
    assert (g_plain - g_pas).abs().max() > 1e-3
    expected = ((plain.sites[0].route_logits(x) + energy) / 1.6).softmax(-1)
    assert torch.allclose(g_pas, expected, atol=1e-6)
    _, off = _pair("off")
    with torch.no_grad():
        assert torch.allclose(off._gate(off.sites[0], x, torch.zeros(0)), g_plain)  # off == plain moe_lora


def test_pathway_energy_is_the_projection_onto_each_experts_pas():
    A = torch.randn(3, 2, 8)
    x = torch.randn(1, 4, 8)
    energy = pathway_energy(x, A)
    for e in range(3):
        q = torch.linalg.qr(A[e].T).Q  # (8, 2)
        assert torch.allclose(energy[0, :, e], (x[0] @ q).pow(2).mean(-1), atol=1e-5)
    # invariant to the basis: rescaling or mixing an expert's A rows leaves its PAS and energy unchanged
    mixed = A.clone()
    mixed[0] = torch.tensor([[2.0, 1.0], [0.0, -3.0]]) @ A[0]
    assert torch.allclose(pathway_energy(x, mixed), energy, atol=1e-4)


def test_pas_only_has_no_router():
    model = build("pass_moe", pass_moe={"reweight": "pas_only"})
    model.begin_task(0, 3, 0)
    assert model.task_parameter_groups(0).routing == []
    model.train()
    assert torch.isfinite(model.training_loss(make_batch(), 0).total)


def test_stabilisation_is_exactly_zero_on_task_0():
    model = build("pass_moe")
    model.begin_task(0, 3, 0)
    model.train()
    out = model.training_loss(make_batch(), 0)
    assert out.parts["stab"].item() == 0.0 and not out.parts["stab"].requires_grad


def test_stabilisation_pulls_only_the_important_rank_directions_back():
    model = build("pass_moe", pass_moe={"importance_top_p": 0.25})
    train_task(model, 0)
    site = model.sites[0]
    assert bool((site.importance > 0).all()) and torch.equal(site.a_ref, site.A.detach())
    weights = model._stabilised(site)  # (E, r)
    kept = weights > 0
    assert kept.sum().item() == round(0.25 * kept.numel())
    model.begin_task(1, *TASKS[1])
    with torch.no_grad():  # task 1 drifts every expert
        for s in model.sites:
            s.A += 0.1
            s.B += 0.1
    model.zero_grad(set_to_none=True)
    stab = model.regulariser(1)
    assert stab.item() > 0
    stab.backward()
    grad_a = site.A.grad.abs().sum(-1)  # (E, r)
    grad_b = site.B.grad.abs().sum(-1)
    assert bool((grad_a[kept] > 0).all()) and bool((grad_b[kept] > 0).all())
    assert torch.count_nonzero(grad_a[~kept]) == 0 and torch.count_nonzero(grad_b[~kept]) == 0
    assert site.router_weight.grad is None
    before = stab.item()
    with torch.no_grad():
        for s in model.sites:
            s.A -= 1.0 * s.A.grad
            s.B -= 1.0 * s.B.grad
    assert model.regulariser(1).item() < before


def test_importance_accumulates_and_references_are_importance_weighted():
    model = build("pass_moe")
    train_task(model, 0)
    site = model.sites[0]
    imp0, a0 = site.importance.clone(), site.A.detach().clone()
    train_task(model, 1)
    imp1 = site.importance - imp0  # task 1's own importance
    assert bool((imp1 > 0).all())
    w0 = (imp0 / (imp0 + imp1))[..., None]
    expected = w0 * a0 + (1 - w0) * site.A.detach()
    assert torch.allclose(site.a_ref, expected, atol=1e-6)


@pytest.mark.parametrize("method", ["moe_lora", "pass_moe"])
def test_earlier_heads_stay_frozen_and_replay_predicts_identically(method):
    model = build(method)
    states = []
    train_task(model, 0)
    states.append(model.task_state(0))
    head0 = {n: p.clone() for n, p in model.heads.heads[0].named_parameters()}
    a0 = model.sites[0].A.detach().clone()
    train_task(model, 1)
    states.append(model.task_state(1))
    for n, p in model.heads.heads[0].named_parameters():
        assert torch.equal(p, head0[n]) and not p.requires_grad
    assert not torch.equal(model.sites[0].A, a0)  # the shared experts kept training
    fresh = build(method)
    for k, state in enumerate(states):
        fresh.begin_task(k, *TASKS[k])
        fresh.load_task_state(k, state)
    fresh.eval()
    batch = make_batch(n=6, seed=99)
    a, b = model.predict(batch), fresh.predict(batch)
    # same tasks; scores to float rounding (CPU matmuls are not bitwise repeatable even on one model)
    assert torch.equal(a.task, b.task) and torch.allclose(a.scores, b.scores, atol=1e-6)
    assert torch.equal(a.scores.isinf(), b.scores.isinf())


@pytest.mark.parametrize("method", ["moe_lora", "pass_moe"])
def test_parameter_counts_closed_form(method):
    E, r, C = 4, 4, 2
    model = build(method)
    model.begin_task(0, 3, 0)
    model.begin_task(1, C, 3)
    d, sites = 32, 2 * 3  # tiny ViLT: hidden 32, 2 layers x (q, k, v)
    adapters = sites * (E * r * d + E * r * d + E * d)  # A, B, router without bias
    counts = model.parameter_counts()
    assert counts["adapters_per_task"] == adapters
    assert counts["trainable"] == adapters + d * C + C
    backbone = sum(p.numel() for p in model.vilt.parameters()) - adapters
    assert counts["total"] == backbone + adapters + (d * 3 + 3) + (d * C + C)
