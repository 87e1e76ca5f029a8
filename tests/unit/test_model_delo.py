"""DeLoModel on a tiny random ViLT: identity at init, task isolation, guided routing, Task-Key Memory,
per-sample task routing, checkpoints and statistics (method.md §1-§7)."""

import pytest
import torch
from tiny_vilt import tiny_vilt

from delo.config import ModelConfig
from delo.methods.delo.config import LossConfig
from delo.methods.delo.layer import SiteGroup
from delo.methods.delo.loss import compute_loss
from delo.methods.delo.model import DeLoModel

TEXT_LEN = 8
INPUTS = ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask")


def _batch(missing=(0, 1, 2, 0), tasks=None, seed=0) -> dict:
    """Sample 0 has half its image masked out; odd samples have padded text."""
    g = torch.Generator().manual_seed(seed)
    n = len(missing)
    attention = torch.ones(n, TEXT_LEN, dtype=torch.long)
    attention[1::2, 5:] = 0
    pixel_mask = torch.ones(n, 32, 32, dtype=torch.long)
    pixel_mask[0, :, 16:] = 0
    tasks = torch.tensor(tasks if tasks is not None else [0] * n)
    return {
        "input_ids": torch.randint(1, 99, (n, TEXT_LEN), generator=g) * attention,
        "attention_mask": attention,
        "token_type_ids": torch.zeros(n, TEXT_LEN, dtype=torch.long),
        "pixel_values": torch.randn(n, 3, 32, 32, generator=g),
        "pixel_mask": pixel_mask,
        "missing": torch.tensor(missing),
        "task": tasks,
        "labels": torch.where(tasks == 0, torch.arange(n) % 3, 3 + torch.arange(n) % 2),
    }


def _model(tasks=1, **overrides) -> DeLoModel:
    model = DeLoModel(tiny_vilt(), ModelConfig(**{"E": 4, "r": 2, **overrides}), multilabel=False)
    for k, (classes, offset) in enumerate([(3, 0), (2, 3)][:tasks]):
        model.begin_task(k, classes, offset)
    return model


@torch.no_grad()
def _randomize_b(model: DeLoModel, k: int) -> None:
    for site in model.sites:
        torch.nn.init.normal_(site.pools[k].B, std=0.5)


def _subset(batch: dict, rows) -> dict:
    return {k: v[rows] for k, v in batch.items()}


def _manual_queries(x: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked means over image [CLS] + valid patches (q_v) and over text tokens with mask 1 (q_t)."""
    text, image = token_mask[:, :TEXT_LEN, None].float(), token_mask[:, TEXT_LEN:, None].float()
    q_v = (x[:, TEXT_LEN:] * image).sum(1) / image.sum(1)
    q_t = (x[:, :TEXT_LEN] * text).sum(1) / text.sum(1)
    return q_v, q_t


def _capture(model: DeLoModel, layer: int = 0) -> dict:
    """Record ViLT's combined token mask and the LayerNorm-ed input of ``layer`` on every call."""
    seen = {"mask": [], "x": []}
    model.vilt.embeddings.register_forward_hook(lambda m, a, out: seen["mask"].append(out[1]))
    ln = model.vilt.encoder.layer[layer].layernorm_before
    ln.register_forward_hook(lambda m, a, out: seen["x"].append(out.detach()), prepend=True)
    return seen


@pytest.mark.parametrize(
    "overrides",
    [{}, {"variant": "delo_lora"}, {"variant": "unified_pool"}, {"variant": "no_guide"},
     {"gate": "weighted", "delta_scope": "own_tokens"}, {"tkm_layer": 1}],
)  # fmt: skip
def test_step_zero_equals_the_backbone(overrides):
    batch = _batch(tasks=(0, 1, 1, 0))
    vilt = tiny_vilt()
    torch.manual_seed(7)  # ViLT draws a random patch order: same seed, same order
    reference = vilt(**{k: batch[k] for k in INPUTS})
    model = _model(tasks=2, **overrides)
    for mode in ("train", "proxy", "agnostic", "task_aware"):
        torch.manual_seed(7)
        out = model(batch, mode)
        if overrides.get("tkm_layer") and mode in ("train", "agnostic"):  # the key pass drew its own order
            torch.testing.assert_close(out.pooled, reference.pooler_output, atol=1e-6, rtol=0)
        else:
            assert torch.equal(out.pooled, reference.pooler_output), mode


def test_one_step_trains_the_current_task_only():
    model = _model(tasks=1)
    loss_cfg = LossConfig()
    opt = torch.optim.AdamW(model.task_parameters(0), lr=1e-2, weight_decay=0.0)
    compute_loss(model, _batch(), 0, loss_cfg).total.backward()
    opt.step()
    model.begin_task(1, 2, 3)
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in model.task_parameters(1)}
    frozen = model.task_state(0)
    backbone = {n: p.clone() for n, p in model.vilt.named_parameters() if ".pools." not in n}
    batch = _batch(tasks=(1, 1, 1, 1), seed=1)
    opt = torch.optim.AdamW(model.task_parameters(1), lr=1e-2, weight_decay=0.0)
    states = [model.task_state(1)]
    for _ in range(2):
        opt.zero_grad()
        compute_loss(model, batch, 1, loss_cfg).total.backward()
        opt.step()
        states.append(model.task_state(1))

    def changed(step: int, suffix: str) -> list[bool]:
        names = [n for n in states[0] if n.endswith(suffix)]
        assert names, suffix
        return [not torch.equal(states[step][n], states[step - 1][n]) for n in names]

    # Step 1: B = 0 zeroes every gradient except B's and the head's (identity at init, exactly).
    assert all(changed(1, ".B")) and all(changed(1, "head.weight"))
    for role in (".A", ".W_A", ".W_B", ".M"):
        assert not any(changed(1, role)), role
    # Step 2: factors, routers and compatibility maps of every site move.
    for role in (".A", ".B", ".W_A", ".W_B", ".M", "head.weight", "head.bias"):
        assert all(changed(2, role)), role
    for name, tensor in model.task_state(0).items():
        assert torch.equal(tensor, frozen[name]), name
    for name, p in model.vilt.named_parameters():
        if ".pools." not in name:
            assert torch.equal(p, backbone[name]), name


@pytest.mark.parametrize("gate", ["ste", "weighted", "hard"])
def test_router_gradient_through_the_model(gate):
    model = _model(gate=gate)
    _randomize_b(model, 0)
    compute_loss(model, _batch(), 0, LossConfig()).total.backward()
    for site in model.sites:
        pool = site.pools[0]
        for name in ("W_A", "W_B", "M"):
            grad = getattr(pool, name).grad
            if gate == "hard":
                assert grad is None, (site.site, name)
            else:
                assert grad is not None and grad.abs().sum() > 0, (site.site, name)


@pytest.mark.parametrize(
    "variant, code, pool, query",
    [("delo", 1, 1, "v"), ("delo", 2, 0, "t"), ("delo", 0, 1, "t"), ("delo", 0, 0, "v"),
     ("no_guide", 1, 1, "t"), ("no_guide", 2, 0, "v")],
)  # fmt: skip
def test_pool_selection_uses_the_guided_query(variant, code, pool, query):
    model = _model(variant=variant, E=6, r=2)
    _randomize_b(model, 0)
    seen = _capture(model)
    model.enable_routing_stats()
    model(_batch(missing=(code,)), "train")
    q_v, q_t = _manual_queries(seen["x"][0], seen["mask"][0])
    q = (q_v if query == "v" else q_t)[0]
    stats = model.routing_stats()["selection"]
    for role in ("query", "key", "value"):
        site = model.vilt.get_submodule(f"encoder.layer.0.attention.attention.{role}")
        p = site.pools[0]
        p_a = (p.W_A[pool] @ q).softmax(-1)
        picked_a = p_a.topk(2).indices
        g_a = torch.zeros(6).index_fill(0, picked_a, 1.0)
        s_b = (p.W_B[pool] @ q).softmax(-1) + (g_a @ p.M[pool]).softmax(-1)
        counts = stats[site.site][0]  # (2 [A, B], 2 [v, t], E)
        assert set(counts[0, pool].nonzero().flatten().tolist()) == set(picked_a.tolist())
        assert set(counts[1, pool].nonzero().flatten().tolist()) == set(s_b.topk(2).indices.tolist())


def test_shared_task_keys_follow_the_ema_formula():
    model = _model(beta=0.75, tkm_keys="shared")
    seen = _capture(model)
    assert torch.equal(model.task_keys, torch.zeros(1, 32))
    first = model(_batch(seed=1), "train")
    key = model.task_keys[0].clone()
    assert torch.equal(key, 0.75 * torch.zeros(32) + 0.25 * first.key_query.mean(0))
    # u = (q̂_v + q̂_t) / 2 at layer 0's input: complete -> mean of both, text missing -> q_v, image missing -> q_t
    q_v, q_t = _manual_queries(seen["x"][0], seen["mask"][0])
    expected_u = torch.stack([(q_v[0] + q_t[0]) / 2, q_v[1], q_t[2], (q_v[3] + q_t[3]) / 2])
    torch.testing.assert_close(first.key_query, expected_u, atol=1e-6, rtol=1e-6)
    second = model(_batch(seed=2), "train")
    assert torch.equal(model.task_keys[0], 0.75 * key + 0.25 * second.key_query.mean(0))
    key = model.task_keys.clone()
    for mode in ("proxy", "agnostic", "task_aware"):
        model(_batch(seed=3), mode)
    assert torch.equal(model.task_keys, key)


def test_per_modality_task_keys_average_the_real_modality_only():
    model = _model(beta=0.75)
    assert model.cfg.tkm_keys == "per_modality"
    seen = _capture(model)
    assert torch.equal(model.task_keys, torch.zeros(1, 2, 32))
    out = model(_batch(missing=(0, 1, 2, 0), seed=1), "train")
    q_v, q_t = _manual_queries(seen["x"][0], seen["mask"][0])
    torch.testing.assert_close(out.key_query, torch.stack([q_v, q_t], dim=1), atol=1e-6, rtol=1e-6)
    # key^v from the samples with a real image (0, 1, 3), key^t from those with real text (0, 2, 3)
    expected = 0.25 * torch.stack([q_v[[0, 1, 3]].mean(0), q_t[[0, 2, 3]].mean(0)])
    torch.testing.assert_close(model.task_keys[0], expected, atol=1e-6, rtol=1e-6)
    key = model.task_keys.clone()
    model(_batch(missing=(2, 2, 2, 2), seed=2), "train")  # no real image: key^v stays
    assert torch.equal(model.task_keys[0, 0], key[0, 0]) and not torch.equal(model.task_keys[0, 1], key[0, 1])
    key = model.task_keys.clone()
    for mode in ("proxy", "agnostic", "task_aware"):
        model(_batch(seed=3), mode)
    assert torch.equal(model.task_keys, key)


@pytest.mark.parametrize("variant", ["delo", "delo_lora", "unified_pool"])
def test_mixed_batch_routes_each_sample_to_its_own_task(variant):
    model = _model(tasks=2, variant=variant)
    for k in range(2):
        _randomize_b(model, k)
    batch = _batch(tasks=(0, 1, 1, 0))
    keys = model.task_keys.clone()

    def alone(i: int) -> torch.Tensor:
        out = model(_subset(batch, [i]), "train", task=int(batch["task"][i]))
        model.task_keys.copy_(keys)  # the reference pass must not move the keys
        return out.scores[0]

    with torch.no_grad():
        oracle = model(batch, "task_aware")
        assert torch.equal(oracle.task, batch["task"])
        for i in range(4):
            torch.testing.assert_close(oracle.scores[i], alone(i), atol=1e-5, rtol=1e-5)
        # Agnostic: keys pointing at samples 0 (task 0) and 1 (task 1) send each to its own task.
        pair = _subset(batch, [0, 1])
        del pair["task"]  # task-agnostic forwards never read it
        u = model(pair, "agnostic").key_query
        model.task_keys.copy_(u)
        agnostic = model.predict(pair)
        assert agnostic.task.tolist() == [0, 1]
        for i in range(2):
            torch.testing.assert_close(agnostic.scores[i], alone(i), atol=1e-5, rtol=1e-5)
        assert torch.isinf(agnostic.scores[0, 3:]).all() and torch.isinf(agnostic.scores[1, :3]).all()


@pytest.mark.parametrize("tkm_keys", ["shared", "per_modality"])
def test_deeper_key_site_uses_an_expert_free_pass(tkm_keys):
    model = _model(tasks=2, tkm_layer=1, tkm_keys=tkm_keys)
    for k in range(2):
        _randomize_b(model, k)
    seen = _capture(model, layer=1)
    batch = _batch()
    with torch.no_grad():
        out = model(batch, "agnostic")
        assert len(seen["x"]) == 2  # key pass (stopped at layer 1's input) + main pass
        q_v, q_t = _manual_queries(seen["x"][0], seen["mask"][0])
        if tkm_keys == "shared":
            expected = torch.stack([(q_v[0] + q_t[0]) / 2, q_v[1], q_t[2], (q_v[3] + q_t[3]) / 2])
        else:
            expected = torch.stack([q_v, q_t], dim=1)
        torch.testing.assert_close(out.key_query, expected, atol=1e-6, rtol=1e-6)
        assert torch.equal(out.task, model.tkm.infer(out.key_query, batch["missing"]))
        # The key pass ran without experts: it matches a pass with every B set to zero.
        for site in model.sites:
            for pool in site.pools:
                pool.B.zero_()
        model(batch, "task_aware")
        torch.testing.assert_close(seen["x"][0][:, :TEXT_LEN], seen["x"][2][:, :TEXT_LEN], atol=1e-6, rtol=0)
        assert not torch.allclose(seen["x"][1][:, :TEXT_LEN], seen["x"][2][:, :TEXT_LEN], atol=1e-4)


@pytest.mark.parametrize("tkm_keys", ["shared", "per_modality"])
def test_task_state_round_trip(tkm_keys):
    model = _model(tasks=2, tkm_keys=tkm_keys)
    for k in range(2):
        _randomize_b(model, k)
    model(_batch(), "train")
    states = [model.task_state(k) for k in range(2)]
    assert "task_key" in states[1] and "head.weight" in states[1]
    assert all(isinstance(t, torch.Tensor) for t in states[0].values())
    assert states[1]["task_key"].shape == ((32,) if tkm_keys == "shared" else (2, 32))
    assert states[0]["task_key"].abs().sum() == 0 and states[1]["task_key"].abs().sum() > 0  # task 1 trained
    fresh = _model(tasks=2, tkm_keys=tkm_keys)
    for k in range(2):
        fresh.load_task_state(k, states[k])
        for name, tensor in fresh.task_state(k).items():
            assert torch.equal(tensor, states[k][name]), name
    batch = _batch(tasks=(0, 1, 1, 0))
    torch.manual_seed(3)
    expected = model(batch, "agnostic").scores
    torch.manual_seed(3)
    assert torch.equal(fresh(batch, "agnostic").scores, expected)
    with pytest.raises(KeyError, match="missing"):
        fresh.load_task_state(0, {k: v for k, v in states[0].items() if k != "task_key"})
    with pytest.raises(ValueError, match="shape"):
        fresh.load_task_state(0, {**states[0], "head.weight": torch.zeros(1, 1)})
    other = _model(tasks=1, tkm_keys="per_modality" if tkm_keys == "shared" else "shared")
    with pytest.raises(ValueError, match="task_key: shape"):
        other.load_task_state(0, states[0])


def test_begin_task_checks_order_and_offsets():
    model = _model(tasks=1)
    with pytest.raises(ValueError, match="in order"):
        model.begin_task(2, 2, 3)
    with pytest.raises(ValueError, match="contiguous"):
        model.begin_task(1, 2, 4)
    assert [p.requires_grad for p in model.task_parameters(0)] == [True] * len(model.task_parameters(0))


def test_routing_stats_count_selections_and_reset():
    model = _model(tasks=1)
    out = model(_batch(), "train")
    assert model.routing_stats() == {"selection": {}, "query_cos": {}}  # disabled: nothing recorded
    model.enable_routing_stats()
    batch = _batch()
    out = model(batch, "train")
    model(batch, "proxy")  # the proxy pass is not the routing being described
    stats = model.routing_stats()
    assert sorted(stats["selection"]) == model.site_names
    for counts in stats["selection"].values():
        assert counts.shape == (1, 2, 2, 4)
        assert (counts.sum(-1) == 4 * 2).all()  # every sample picks r = 2 per pool, A and B
    complete = batch["missing"] == 0
    assert sorted(stats["query_cos"]) == sorted(out.query_sites)
    for site, raw in zip(out.query_sites, out.queries, strict=True):
        cos = (
            torch.nn.functional.cosine_similarity(raw[complete, 0], raw[complete, 1], dim=-1).mean().detach()
        )
        assert stats["query_cos"][site] == pytest.approx(float(cos), abs=1e-6)
    assert model.routing_stats() == {"selection": {}, "query_cos": {}}


def test_grouped_sites_match_site_by_site_routing():
    model = _model(tasks=2, gate="weighted", delta_scope="own_tokens")
    for k in range(2):
        _randomize_b(model, k)
    q, k, v = (
        model.vilt.get_submodule(f"encoder.layer.0.attention.attention.{n}")
        for n in ("query", "key", "value")
    )
    assert q.group is k.group is v.group and len(q.group.sites) == 3
    batch = _batch(tasks=(0, 1, 1, 0))
    with torch.no_grad():
        torch.manual_seed(4)
        grouped = model(batch, "task_aware").scores
        for site in model.sites:
            site.group = SiteGroup([site])
        torch.manual_seed(4)
        single = model(batch, "task_aware").scores
    torch.testing.assert_close(grouped, single, atol=1e-6, rtol=1e-6)


def test_evaluation_reruns_only_wrongly_keyed_samples_and_matches_full_oracle():
    from delo.evaluate import evaluate_task

    model = _model(tasks=2)
    for k in range(2):
        _randomize_b(model, k)
    batch = _batch(missing=(0, 0, 0, 0), tasks=(0, 1, 1, 0))
    with torch.no_grad():
        # swapped keys: sample 0 (task 0) and sample 1 (task 1) are each keyed to the other task
        u = model(_subset(batch, [0, 1]), "agnostic").key_query
        model.task_keys.copy_(u.flip(0))
        agnostic = model.predict({k: v for k, v in batch.items() if k != "task"})
        full_oracle = model.predict(batch, task_aware=True)
    calls = []
    predict = model.predict

    def counting(b, task_aware=False):
        calls.append((task_aware, b["input_ids"].shape[0]))
        return predict(b, task_aware=task_aware)

    model.predict = counting
    out, _ = evaluate_task(model, [batch], [0, 1, 2, 3, 4], multilabel=False, device=torch.device("cpu"))
    wrong = int((agnostic.task != batch["task"]).sum())
    assert wrong >= 2
    assert calls == [(False, 4), (True, wrong)]
    expected_hit = (full_oracle.scores.argmax(1) == batch["labels"]).numpy()
    assert (out["task_aware"].hit == expected_hit).all()
    assert out["task_aware"].key_hit.all()
    assert (out["agnostic"].key_hit == (agnostic.task == batch["task"]).numpy()).all()


def test_reused_evaluation_forwards_only_rerouted_samples_and_equals_a_full_one():
    """A later row with frozen tasks: the key pass for everyone, a forward only for samples routed to another
    task than before and than their own; outcomes identical to evaluating from scratch."""
    from delo.evaluate import evaluate_task

    model = _model(tasks=2)
    for k in range(2):
        _randomize_b(model, k)
    batch = _batch(missing=(0, 0, 0, 0), tasks=(0, 1, 1, 0))
    cpu = torch.device("cpu")
    with torch.no_grad():
        u = model(_subset(batch, [0, 1]), "agnostic").key_query  # (2, ...) queries of samples 0 and 1
        model.task_keys.copy_(u)  # sample 0 -> task 0, sample 1 -> task 1
    _, reuse = evaluate_task(model, [batch], [0, 1, 2, 3, 4], multilabel=False, device=cpu)
    with torch.no_grad():
        model.task_keys.copy_(u.flip(0))  # the keys swap: sample 0 -> task 1 (elsewhere), 1 -> task 0
    full, _ = evaluate_task(model, [batch], [0, 1, 2, 3, 4], multilabel=False, device=cpu)
    calls = []
    predict = model.predict

    def counting(b, task_aware=False):
        calls.append((task_aware, b["task"].tolist()))
        return predict(b, task_aware=task_aware)

    model.predict = counting
    out, again = evaluate_task(model, [batch], [0, 1, 2, 3, 4], multilabel=False, device=cpu, reuse=reuse)
    moved = again.inferred != reuse.inferred
    assert moved.any()
    elsewhere = moved & (again.inferred != batch["task"].numpy())
    assert calls == ([(True, again.inferred[elsewhere].tolist())] if elsewhere.any() else [])
    for mode in ("agnostic", "task_aware"):
        for field in ("hit", "key_hit", "missing"):
            assert (getattr(out[mode], field) == getattr(full[mode], field)).all(), (mode, field)
