"""MoRA on a tiny random ViLT: the per-path update merges into the frozen weight, the Gram matrices carry gradient
across modalities, earlier tasks stay frozen, task states replay, the Task-Key Memory finds the task, and the
parameter count has its closed form (docs/methods.md, section mora)."""

import pytest
import torch
from tiny_vilt import tiny_vilt

from delo.config import ModelConfig, RunConfig
from delo.methods import build_method
from delo.methods.mora.model import TEXT, VISION, MoRAModel
from delo.vilt.context import use_context

TEXT_LEN = 8
D = 32  # tiny ViLT hidden size
LAYERS = 2


def _batch(missing=(0, 1, 2, 0), tasks=None, seed=0, shift=0.0) -> dict:
    """Odd samples have padded text; ``shift`` moves pixels and token ids (a task's own input distribution)."""
    g = torch.Generator().manual_seed(seed)
    n = len(missing)
    attention = torch.ones(n, TEXT_LEN, dtype=torch.long)
    attention[1::2, 5:] = 0
    tasks = torch.tensor(tasks if tasks is not None else [0] * n)
    low = 1 if shift <= 0 else 50
    return {
        "input_ids": torch.randint(low, low + 49, (n, TEXT_LEN), generator=g) * attention,
        "attention_mask": attention,
        "token_type_ids": torch.zeros(n, TEXT_LEN, dtype=torch.long),
        "pixel_values": torch.randn(n, 3, 32, 32, generator=g) + shift,
        "pixel_mask": torch.ones(n, 32, 32, dtype=torch.long),
        "missing": torch.tensor(missing),
        "task": tasks,
        "labels": torch.where(tasks == 0, torch.arange(n) % 3, 3 + torch.arange(n) % 2),
    }


def _model(tasks=1, **mora) -> MoRAModel:
    tkm = {k: mora.pop(k) for k in ("tkm_layer", "tkm_keys") if k in mora}
    cfg = ModelConfig(method="mora", mora=mora, **tkm)
    model = build_method(tiny_vilt(), RunConfig(model=cfg), multilabel=False)
    for k, (classes, offset) in enumerate([(3, 0), (2, 3)][:tasks]):
        model.begin_task(k, classes, offset)
    return model


@torch.no_grad()
def _perturb(model: MoRAModel, k: int, seed: int = 1) -> None:
    """Move task k away from its init: non-zero specific B factors, magnitudes off ||W||_col."""
    g = torch.Generator().manual_seed(seed)
    for site in model.sites:
        spec = site.tasks[k]
        for b in spec.b:
            b.copy_(0.3 * torch.randn(b.shape, generator=g))
        if hasattr(spec, "magnitude"):
            spec.magnitude.mul_(1 + 0.2 * torch.randn(spec.magnitude.shape, generator=g))


def _predict(model: MoRAModel, batch: dict, task_aware: bool = False):
    torch.manual_seed(7)  # ViLT draws a random patch order: same seed, same order
    return model.predict(batch, task_aware=task_aware)


def _train(model: MoRAModel, k: int, batches, steps=3) -> None:
    opt = torch.optim.AdamW(model.task_parameters(k), lr=1e-2, weight_decay=0.1)
    model.train()
    for step in range(steps):
        loss = model.training_loss(batches[step % len(batches)], k).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _train_context(model: MoRAModel, batch: dict, k: int):
    ctx = model._key_site.context(batch, "train")
    ctx.set_task(torch.full_like(ctx.missing, k), k, model.num_tasks)
    return use_context(model._slot, ctx)


@pytest.mark.parametrize("compose", ["dora", "lora"])
def test_merged_per_path_weights_equal_the_adapter_forward(compose):
    """Every adapted linear of a full mixed-task forward: text tokens equal x W_t^T + bias and image tokens
    x W_v^T + bias, with W_m = W + dW^m_k from merged_weight (closed form) and k each sample's task."""
    model = _model(tasks=2, compose=compose, alpha=0.5).double()  # float64: 1e-5 is far above rounding
    _perturb(model, 0, seed=1)
    _perturb(model, 1, seed=2)
    seen = []
    hooks = [s.register_forward_hook(lambda m, a, y: seen.append((m, a[0], y))) for s in model.sites]
    batch = _batch(tasks=[0, 1, 1, 0])
    model.predict({**batch, "pixel_values": batch["pixel_values"].double()}, task_aware=True)
    for h in hooks:
        h.remove()
    assert len(seen) == 3 * LAYERS
    with torch.no_grad():
        for site, x, y in seen:
            w, bias = site.base_layer.weight, site.base_layer.bias
            for i, k in enumerate(batch["task"].tolist()):
                w_t, w_v = site.merged_weight(k, TEXT), site.merged_weight(k, VISION)
                # the update is real and differs between the paths, so the check cannot pass by W alone
                assert (w_t - w).abs().max() > 1e-2 and (w_v - w).abs().max() > 1e-2
                assert (w_t - w_v).abs().max() > 1e-3
                merged = torch.cat([x[i, :TEXT_LEN] @ w_t.T, x[i, TEXT_LEN:] @ w_v.T]) + bias
                torch.testing.assert_close(y[i], merged, atol=1e-5, rtol=0)


@pytest.mark.parametrize("coupling", ["gram", "none"])
def test_gram_matrices_carry_gradient_across_modalities(coupling):
    """A loss on one path's tokens moves the other side's common factor through its Gram matrix, and only then;
    the other path's specific factors and magnitudes never get gradient."""
    model = _model(tasks=1, coupling=coupling)
    _perturb(model, 0)
    site = model.sites[0]
    common, spec = site.common[0], site.tasks[0]
    batch = _batch()
    x = torch.randn(4, TEXT_LEN + 5, D)
    other = {TEXT: [common.B, spec.a[VISION], spec.b[VISION]], VISION: [common.A, spec.a[TEXT], spec.b[TEXT]]}
    for path, tokens in ((TEXT, slice(None, TEXT_LEN)), (VISION, slice(TEXT_LEN, None))):
        with _train_context(model, batch, 0):
            loss = site(x)[:, tokens].pow(2).sum()
        own = common.A if path == TEXT else common.B
        params = [own, *other[path], spec.magnitude]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
        assert grads[0].abs().sum() > 0  # the path's own common factor
        crossed = grads[1].abs().sum()  # the other side's common factor, only through G
        assert (crossed > 0) if coupling == "gram" else (crossed == 0)
        assert grads[2].abs().sum() == 0 and grads[3].abs().sum() == 0  # the other path's specific factors
        other_path = VISION if path == TEXT else TEXT
        assert grads[4][:, other_path].abs().sum() == 0 and grads[4][:, path].abs().sum() > 0


def test_training_task_one_leaves_task_zero_bit_identical():
    model = _model(tasks=1)
    _train(model, 0, [_batch(seed=1)])
    before = model.task_state(0)
    probe = _batch(tasks=[0, 0, 0, 0], seed=5)
    scores0 = _predict(model, probe, task_aware=True).scores
    model.begin_task(1, 2, 3)
    start = model.task_state(1)
    _train(model, 1, [_batch(tasks=[1] * 4, seed=2)])
    after = model.task_state(0)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(not p.requires_grad for p in model.task_parameters(0))
    moved = model.task_state(1)
    assert any(not torch.equal(start[n], moved[n]) for n in start if n != "task_key")
    assert torch.equal(_predict(model, probe, task_aware=True).scores[:, :3], scores0)


@pytest.mark.parametrize("tkm_keys", ["per_modality", "shared"])
def test_replaying_task_states_predicts_identically(tkm_keys):
    model = _model(tasks=1, tkm_keys=tkm_keys)
    _train(model, 0, [_batch(seed=1)])
    model.begin_task(1, 2, 3)
    _train(model, 1, [_batch(tasks=[1] * 4, seed=2, shift=2.0)])
    states = [model.task_state(k) for k in range(2)]
    fresh = _model(tasks=0, tkm_keys=tkm_keys)
    torch.manual_seed(123)  # a different init: everything must come from the states
    for k, (classes, offset) in enumerate([(3, 0), (2, 3)]):
        fresh.begin_task(k, classes, offset)
        fresh.load_task_state(k, states[k])
    probe = _batch(tasks=[0, 1, 1, 0], seed=7)
    for task_aware in (False, True):
        a, b = _predict(model, probe, task_aware), _predict(fresh, probe, task_aware)
        assert torch.equal(a.task, b.task) and torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("tkm_layer", [0, 1])
def test_task_key_memory_finds_the_task(tkm_layer):
    """Two tasks with their own input distributions: the agnostic forward and the adapter-free key pass both
    route every sample (complete, text-missing, image-missing) to its own task."""
    model = _model(tasks=1, tkm_layer=tkm_layer)
    shifts = (-2.0, 2.0)
    _train(model, 0, [_batch(seed=s, shift=shifts[0]) for s in range(2)], steps=2)
    model.begin_task(1, 2, 3)
    _train(model, 1, [_batch(tasks=[1] * 4, seed=s, shift=shifts[1]) for s in range(2)], steps=2)
    for k in range(2):
        probe = _batch(missing=(0, 1, 2, 0, 1, 2), tasks=[k] * 6, seed=10 + k, shift=shifts[k])
        blind = {n: v for n, v in probe.items() if n != "task"}
        agnostic = _predict(model, blind)
        assert agnostic.task.tolist() == [k] * 6
        assert torch.equal(model.infer_task(blind), agnostic.task)
        # the scores are task k's head on task k's MoRA: the oracle's (up to rounding: with tkm_layer > 0 the key
        # pass draws a patch order first, so the main pass sees the patches in another order)
        torch.testing.assert_close(
            agnostic.scores, _predict(model, probe, task_aware=True).scores, atol=1e-5, rtol=0
        )


def test_mixed_batch_uses_each_samples_own_task():
    model = _model(tasks=2, alpha=0.5)
    _perturb(model, 0, seed=1)
    _perturb(model, 1, seed=2)
    batch = _batch(tasks=[1, 0, 1, 0])
    mixed = _predict(model, batch, task_aware=True).scores
    for k in range(2):
        rows = batch["task"] == k
        alone = _predict(model, {n: v[rows] for n, v in batch.items()}, task_aware=True).scores
        torch.testing.assert_close(mixed[rows], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "mora", [{}, {"compose": "lora"}, {"first_layer": 1, "common_rank": 3, "vision_rank": 2, "text_rank": 5}]
)
def test_parameter_counts_have_the_closed_form(mora):
    model = _model(tasks=2, **dict(mora))
    r_c, r_v, r_t = (mora.get(k, 4) for k in ("common_rank", "vision_rank", "text_rank"))
    layers = LAYERS - mora.get("first_layer", 0)
    sites = 3 * layers  # q, k, v
    magnitudes = 0 if mora.get("compose") == "lora" else 4 * D  # (common, specific) x (vision, text)
    adapters = layers * 2 * D * r_c + sites * (2 * D * (r_v + r_t) + magnitudes)
    backbone = sum(p.numel() for p in tiny_vilt().parameters())
    counts = model.parameter_counts()
    assert counts["adapters_per_task"] == adapters
    assert counts["trainable"] == adapters + D * 2 + 2
    assert counts["total"] == backbone + 2 * adapters + (D * 3 + 3) + (D * 2 + 2)
    assert len(model.site_names) == sites


def test_refuses_what_it_cannot_adapt():
    with pytest.raises(ValueError, match="first_layer"):
        _model(tasks=0, first_layer=LAYERS)
    with pytest.raises(ValueError, match="square"):
        build_method(
            tiny_vilt(),
            RunConfig(model=ModelConfig(method="mora", targets=("intermediate.dense",))),
            multilabel=False,
        )
