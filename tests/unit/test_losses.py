"""L = L_cls + lambda1 L_align + lambda2 L_con on a tiny random ViLT (method.md §8)."""

import pytest
import torch
import torch.nn.functional as F
from tiny_vilt import tiny_vilt

from delo.config import ModelConfig
from delo.methods.delo.config import LossConfig
from delo.methods.delo.loss import alignment_loss, compute_loss, consistency_loss
from delo.methods.delo.model import DeLoModel

TEXT_LEN = 8


def _batch(missing=(0, 1, 2, 0), multilabel=False) -> dict:
    g = torch.Generator().manual_seed(0)
    n = len(missing)
    attention = torch.ones(n, TEXT_LEN, dtype=torch.long)
    attention[1::2, 5:] = 0
    labels = (torch.rand(n, 5, generator=g) > 0.5).float() if multilabel else torch.arange(n) % 3
    return {
        "input_ids": torch.randint(1, 99, (n, TEXT_LEN), generator=g) * attention,
        "attention_mask": attention,
        "token_type_ids": torch.zeros(n, TEXT_LEN, dtype=torch.long),
        "pixel_values": torch.randn(n, 3, 32, 32, generator=g),
        "pixel_mask": torch.ones(n, 32, 32, dtype=torch.long),
        "missing": torch.tensor(missing),
        "task": torch.zeros(n, dtype=torch.long),
        "labels": labels,
    }


def _model(multilabel=False, **overrides) -> DeLoModel:
    model = DeLoModel(tiny_vilt(), ModelConfig(**{"E": 4, "r": 2, **overrides}), multilabel=multilabel)
    model.begin_task(0, 3, 0)
    with torch.no_grad():
        for site in model.sites:
            torch.nn.init.normal_(site.pools[0].B, std=0.5)
    return model


def _count_passes(model: DeLoModel) -> list:
    calls = []
    model.vilt.register_forward_pre_hook(lambda m, a: calls.append(1))
    return calls


def _manual_terms(model: DeLoModel, batch: dict, seed: int) -> tuple:
    """Main and proxy logits with the same patch order as compute_loss after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    out = model(batch, "train")
    complete = batch["missing"] == 0
    proxy = model({k: v[complete] for k, v in batch.items()}, "proxy")
    return out, out.scores[:, :3], proxy.scores[:, :3], complete


def test_multiclass_terms_and_total():
    model, batch, cfg = _model(), _batch(), LossConfig(lambda1=0.3, lambda2=0.5)
    passes = _count_passes(model)
    torch.manual_seed(1)
    loss = compute_loss(model, batch, 0, cfg)
    assert len(passes) == 2  # main pass + proxy pass on the complete samples
    out, logits, proxy, complete = _manual_terms(model, batch, seed=1)
    assert torch.equal(loss.cls, F.cross_entropy(logits, batch["labels"]))
    per_site = [1 - F.cosine_similarity(q[complete, 0], q[complete, 1], dim=-1) for q in out.queries]
    assert len(per_site) == 2  # one query site per layer
    torch.testing.assert_close(loss.align, torch.stack(per_site).mean())
    p, q = logits[complete].softmax(-1), proxy.softmax(-1)
    torch.testing.assert_close(loss.con, (p * (p.log() - q.log())).sum(-1).mean())
    assert loss.con > 0
    torch.testing.assert_close(loss.total, loss.cls + 0.3 * loss.align + 0.5 * loss.con)
    loss.total.backward()
    assert model.sites[0].pools[0].B.grad is not None


def test_multilabel_uses_bce_and_bernoulli_kl():
    model, batch = _model(multilabel=True), _batch(multilabel=True)
    torch.manual_seed(2)
    loss = compute_loss(model, batch, 0, LossConfig())
    _, logits, proxy, complete = _manual_terms(model, batch, seed=2)
    assert torch.equal(loss.cls, F.binary_cross_entropy_with_logits(logits, batch["labels"][:, :3]))
    p, q = logits[complete].sigmoid(), proxy.sigmoid()
    kl = p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())  # per label
    torch.testing.assert_close(loss.con, kl.mean())


def test_no_complete_sample_zeroes_aux_terms_without_second_pass():
    model = _model()
    passes = _count_passes(model)
    loss = compute_loss(model, _batch(missing=(1, 2, 1, 2)), 0, LossConfig())
    assert len(passes) == 1
    assert loss.align.item() == 0.0 and loss.con.item() == 0.0
    assert torch.equal(loss.total, loss.cls)


@pytest.mark.parametrize("overrides, lambda2", [({}, 0.0), ({"variant": "delo_lora"}, 0.1)])
def test_second_pass_skipped(overrides, lambda2):
    model = _model(**overrides)
    passes = _count_passes(model)
    loss = compute_loss(model, _batch(), 0, LossConfig(lambda2=lambda2))
    assert len(passes) == 1 and loss.con.item() == 0.0
    assert loss.align > 0  # the alignment term still applies


def test_alignment_is_zero_for_identical_queries():
    q = torch.randn(3, 1, 16).expand(3, 2, 16)  # q_v == q_t for every sample
    wild = torch.randn(3, 2, 16)
    wild[:2] = q[:2]  # sample 2 differs but is not complete: it must not count
    complete = torch.tensor([True, True, False])
    assert alignment_loss([q, wild], complete).abs() < 1e-6
    assert alignment_loss([wild], torch.tensor([False, False, True])) > 0


def test_consistency_is_zero_for_identical_predictions():
    logits = torch.randn(4, 5)
    assert consistency_loss(logits, logits.clone(), multilabel=False).abs() < 1e-7
    assert consistency_loss(logits, logits.clone(), multilabel=True).abs() < 1e-7


def test_consistency_vanishes_when_proxy_and_true_routing_agree():
    model = _model()
    with torch.no_grad():  # both modalities' pools identical: swapping the routing changes nothing
        for site in model.sites:
            pool = site.pools[0]
            for tensor in (pool.A, pool.B, pool.W_A, pool.W_B, pool.M):
                tensor[1] = tensor[0]
    loss = compute_loss(model, _batch(), 0, LossConfig())
    assert loss.con.abs() < 1e-6  # float rounding only: the two passes sum the slots in another order
    with torch.no_grad():
        for site in model.sites:
            torch.nn.init.normal_(site.pools[0].B[1], std=0.5)
    assert compute_loss(model, _batch(), 0, LossConfig()).con > 1e-4


def test_labels_outside_the_task_are_refused():
    model = _model()
    batch = _batch()
    batch["labels"] = torch.tensor([0, 1, 5, 2])
    with pytest.raises(ValueError, match="outside"):
        compute_loss(model, batch, 0, LossConfig())
