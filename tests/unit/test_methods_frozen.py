"""The `frozen` floor: the frozen backbone with DeLo's heads and Task-Key Memory and nothing else. Its scores are
the unmodified ViLT's pooled output through the task's head, it trains the head alone, and it assigns every sample
the task DeLo would with the same keys (so a row minus this floor is what the adapters add)."""

import pytest
import torch
from tiny_vilt import tiny_vilt

from delo.config import ModelConfig, RunConfig
from delo.methods import build_method
from delo.methods.delo.model import DeLoModel
from delo.methods.frozen import FrozenBackbone

TEXT_LEN = 8


def _batch(missing=(0, 1, 2, 0, 0, 2), tasks=(0, 0, 1, 1, 0, 1), seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = len(missing)
    tasks = torch.tensor(tasks)
    return {
        "input_ids": torch.randint(1, 99, (n, TEXT_LEN), generator=g),
        "attention_mask": torch.ones(n, TEXT_LEN, dtype=torch.long),
        "token_type_ids": torch.zeros(n, TEXT_LEN, dtype=torch.long),
        "pixel_values": torch.randn(n, 3, 32, 32, generator=g),
        "pixel_mask": torch.ones(n, 32, 32, dtype=torch.long),
        "missing": torch.tensor(missing),
        "task": tasks,
        "labels": torch.where(tasks == 0, torch.arange(n) % 3, 3 + torch.arange(n) % 2),
    }


def _model(method="frozen", tasks=2, **keys):
    model = build_method(tiny_vilt(), RunConfig(model=ModelConfig(method=method, **keys)), multilabel=False)
    for k, (classes, offset) in enumerate([(3, 0), (2, 3)][:tasks]):
        torch.manual_seed(10 + k)
        model.begin_task(k, classes, offset)
    return model


def test_scores_are_the_unmodified_backbone_through_the_true_head():
    model = _model()
    batch = _batch()
    torch.manual_seed(0)  # ViLT draws its patch order from the global RNG
    pooled = tiny_vilt()(
        **{
            k: batch[k]
            for k in ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask")
        }
    ).pooler_output
    torch.manual_seed(0)
    pred = model.predict(batch, task_aware=True)
    assert torch.equal(pred.task, batch["task"])
    for i, k in enumerate(batch["task"].tolist()):
        span = model.head_span(k)
        torch.testing.assert_close(pred.scores[i, span], model.heads.heads[k](pooled[i : i + 1])[0])
        outside = torch.ones(5, dtype=torch.bool)
        outside[span] = False
        assert torch.isinf(pred.scores[i, outside]).all()


def test_only_the_current_head_trains_and_earlier_tasks_stay_frozen():
    model = _model()
    counts = model.parameter_counts()
    assert counts == {"adapters_per_task": 0, "trainable": 32 * 2 + 2, "total": counts["total"]}
    assert model.task_parameters(1) == list(model.heads.heads[1].parameters())
    assert not any(p.requires_grad for p in model.heads.heads[0].parameters())
    assert not any(p.requires_grad for p in model.vilt.parameters())
    before = {n: t.clone() for n, t in model.task_state(0).items()}
    key1 = model.tkm.keys[1].clone()
    model.train()
    batch = _batch(tasks=(1,) * 6)
    loss = model.training_loss(batch, 1)
    loss.total.backward()
    assert all(p.grad is not None for p in model.heads.heads[1].parameters())
    assert all(p.grad is None for p in model.heads.heads[0].parameters())
    assert not torch.equal(model.tkm.keys[1], key1)  # the train pass moves key 1 (EMA)
    assert all(torch.equal(before[n], t) for n, t in model.task_state(0).items())


@pytest.mark.parametrize("tkm_keys", ["per_modality", "shared"])
def test_infers_the_task_delo_infers_with_the_same_keys(tkm_keys):
    """DeLo reads its key query adapter-free at layer 0, so with equal keys both pick the same task per sample."""
    floor, delo = _model(tkm_keys=tkm_keys), _model("delo", tkm_keys=tkm_keys)
    assert isinstance(floor, FrozenBackbone) and isinstance(delo, DeLoModel)
    g = torch.Generator().manual_seed(3)
    keys = torch.randn(floor.tkm.keys.shape, generator=g)
    with torch.no_grad():
        floor.tkm.keys.copy_(keys)
        delo.task_keys.copy_(keys)
    batch = _batch()
    torch.manual_seed(0)
    inferred = floor.infer_task(batch)
    torch.manual_seed(0)
    assert torch.equal(inferred, delo.infer_task(batch))
    assert len(set(inferred.tolist())) == 2  # both tasks occur: the check is not a constant
    torch.manual_seed(0)
    assert torch.equal(floor.predict({k: v for k, v in batch.items() if k != "task"}).task, inferred)


def test_task_states_replay_to_the_same_predictions():
    model = _model()
    with torch.no_grad():
        model.tkm.keys.copy_(torch.randn(model.tkm.keys.shape, generator=torch.Generator().manual_seed(5)))
    fresh = _model(tasks=0)
    for k in range(2):
        fresh.begin_task(k, *[(3, 0), (2, 3)][k])
        fresh.load_task_state(k, model.task_state(k))
    batch = _batch()
    for task_aware in (False, True):
        torch.manual_seed(0)
        a = model.predict(batch, task_aware)
        torch.manual_seed(0)
        b = fresh.predict(batch, task_aware)
        assert torch.equal(a.task, b.task) and torch.equal(a.scores, b.scores)
