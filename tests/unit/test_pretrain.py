"""Pretraining the tiny backbone: the contrastive terms' math, the unimodal inputs built as the loader builds
them, gradient reaching the pooled path, and a short run that is reproducible bit for bit."""

import hashlib
import math

import pytest
import torch
from transformers import ViltConfig, ViltModel

from delo.data.collate import DUMMY_TEXT, dummy_image
from delo.data.synthetic import WORLD_WORDS, sample_pairs
from delo.tools.pretrain import (
    TINY_CONFIG,
    PretrainConfig,
    PretrainHeads,
    build_tiny_image_processor,
    build_tiny_tokenizer,
    contrastive_loss,
    encode_pairs,
    info_nce,
    make_batch,
    pretrain_loss,
    pretrain_tiny,
    unimodal_batches,
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(WORLD_WORDS, TINY_CONFIG["max_position_embeddings"])


@pytest.fixture(scope="module")
def data(tokenizer):
    return encode_pairs(sample_pairs(3, 8), tokenizer, build_tiny_image_processor(), 40)


def test_info_nce_matches_the_closed_form():
    # one-hot rows: cos 1 on the diagonal, 0 elsewhere -> CE = -log(e^(1/t) / (e^(1/t) + B - 1)), both ways
    b, t = 4, 0.1
    x = torch.eye(b)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + b - 1))
    assert info_nce(x, x, torch.arange(b), t).item() == pytest.approx(expected, abs=1e-6)
    # a subset of anchors (the matched fused pairs) against all positives: one direction only
    sub = info_nce(x[[1, 3]], x, torch.tensor([1, 3]), t)
    assert sub.item() == pytest.approx(expected, abs=1e-6)
    # swapped targets are penalised
    assert info_nce(x, x, torch.tensor([1, 0, 3, 2]), t).item() > expected + 5


def test_unimodal_batches_are_the_loaders_missing_inputs(tokenizer, data):
    batch = make_batch(data, torch.arange(4))
    empty = tokenizer(DUMMY_TEXT, return_tensors="pt")["input_ids"][0]
    image_only, text_only = unimodal_batches(batch, empty)
    assert image_only["input_ids"].tolist() == [[tokenizer.cls_token_id, tokenizer.sep_token_id]] * 4
    assert image_only["attention_mask"].tolist() == [[1, 1]] * 4
    assert torch.equal(image_only["pixel_values"], batch["pixel_values"])
    pixels, mask = dummy_image(64)
    assert torch.equal(text_only["pixel_values"], pixels.expand(4, -1, -1, -1))
    assert torch.equal(text_only["pixel_mask"], mask.expand(4, -1, -1))
    assert torch.equal(text_only["input_ids"], batch["input_ids"])


def test_contrastive_loss_trains_the_pooled_path_of_each_modality(tokenizer, data):
    torch.manual_seed(0)
    config = ViltConfig(vocab_size=tokenizer.vocab_size, pad_token_id=0, **TINY_CONFIG)
    vilt, heads = ViltModel(config), PretrainHeads(config)
    batch = make_batch(data, torch.arange(8))
    gen = torch.Generator().manual_seed(0)
    _, _, fused, matched = pretrain_loss(vilt, heads, batch, gen, tokenizer.mask_token_id, 0.15)
    empty = tokenizer(DUMMY_TEXT, return_tensors="pt")["input_ids"][0]
    loss = contrastive_loss(vilt, heads, batch, fused, matched, empty, 0.1)
    loss.backward()
    # the text [CLS]'s pooler and both modalities' embeddings get gradient from the contrastive terms
    for param in (
        vilt.pooler.dense.weight,
        vilt.embeddings.text_embeddings.word_embeddings.weight,
        vilt.embeddings.patch_embeddings.projection.weight,
        heads.proj.weight,
    ):
        assert param.grad is not None and param.grad.abs().sum() > 0


@pytest.mark.slow
def test_short_pretraining_is_bit_reproducible(tmp_path):
    cfg = PretrainConfig(steps=3, batch_size=8, train_pairs=32, heldout_pairs=16, threads=1)
    cards = [pretrain_tiny(tmp_path / name, cfg, command="test") for name in ("a", "b")]
    assert cards[0]["weights_sha256"] == cards[1]["weights_sha256"]
    digest = hashlib.sha256((tmp_path / "a" / "model.safetensors").read_bytes()).hexdigest()
    assert digest == cards[0]["weights_sha256"]
    assert len(cards[0]["loss_per_100_steps"]["contrastive"]) == 1
    assert cards[0]["loss_per_100_steps"]["contrastive"][0] > 0
