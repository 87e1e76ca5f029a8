"""Backbone loading: the shipped tiny ViLT, local folders and hub snapshots, the offline error, text positions."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from delo.config import ConfigError, ModelConfig
from delo.data.synthetic import sample_pairs
from delo.vilt.backbone import (
    TINY_DIR,
    VILT_B32,
    BackboneError,
    build_random_vilt,
    check_backbone_available,
    interpolate_text_positions,
    load_backbone,
    resolve_backbone,
    write_random_backbone,
)


@pytest.fixture(scope="module")
def tiny():
    return load_backbone(ModelConfig())


@pytest.fixture(scope="module")
def card():
    return json.loads((TINY_DIR / "card.json").read_text())


def forward(backbone, texts, images):
    enc = backbone.tokenizer(
        texts, padding=True, truncation=True, max_length=backbone.max_text_len, return_tensors="pt"
    )
    pix = backbone.image_processor(images, return_tensors="pt")
    with torch.no_grad():
        return backbone.vilt(**enc, pixel_values=pix["pixel_values"], pixel_mask=pix["pixel_mask"])


def assert_frozen(backbone):
    assert not backbone.vilt.training
    assert not any(p.requires_grad for p in backbone.vilt.parameters())


# ----------------------------------------------------------------------------------------------------------
# The shipped tiny backbone


def test_tiny_loads_offline_as_recorded_in_its_card(tiny, card):
    config = tiny.vilt.config
    for key, value in card["config"].items():
        assert getattr(config, key) == value, key
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (128, 4, 4)
    assert tiny.tokenizer.vocab_size == card["vocab_size"] == config.vocab_size
    assert (tiny.name, tiny.image_size, tiny.max_text_len) == ("tiny", 64, 40)
    assert hashlib.sha256((TINY_DIR / "model.safetensors").read_bytes()).hexdigest() == card["weights_sha256"]
    assert card["seed"] != 0 and "pretrain_backbone.py" in card["command"]
    assert_frozen(tiny)


def test_tiny_image_processor_keeps_64_square_with_full_mask(tiny):
    out = tiny.image_processor([Image.new("RGB", (64, 64), "white")], return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 64, 64)
    assert out["pixel_mask"].shape == (1, 64, 64) and bool(out["pixel_mask"].all())
    assert torch.allclose(out["pixel_values"], torch.ones(1, 3, 64, 64))  # white -> 1.0 (mean = std = 0.5)


def test_tiny_tokenizer_dummy_text_and_synthetic_sentences(tiny):
    tok = tiny.tokenizer
    assert tok("")["input_ids"] == [tok.cls_token_id, tok.sep_token_id]
    assert (tok.pad_token_id, tok.unk_token_id) == (0, 1)
    for _, text in sample_pairs(7, 20):
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids and len(ids) <= 40, text
    # an unknown word splits into ##-pieces rather than becoming [UNK]
    assert tok.unk_token_id not in tok("Zebra42 quokka")["input_ids"]


def test_tiny_forward_output_order(tiny):
    out = forward(tiny, ["crimson disk with a", ""], [Image.new("RGB", (64, 64), "red")] * 2)
    text_len = 6  # [CLS] crimson disk with a [SEP]: four words of tiny's vocabulary
    assert out.last_hidden_state.shape == (2, text_len + 1 + 16, 128)
    assert out.pooler_output.shape == (2, 128)


# ----------------------------------------------------------------------------------------------------------
# Local folders and hub snapshots go through the same loader


def test_saved_folder_loads_like_the_real_backbone(tmp_path):
    folder = write_random_backbone(tmp_path / "vilt", hidden_size=32, num_hidden_layers=1)
    backbone = load_backbone(ModelConfig(backbone=str(folder)))
    assert backbone.vilt.config.hidden_size == 32 and backbone.name == str(folder)
    assert backbone.tokenizer.vocab_size == backbone.vilt.config.vocab_size
    assert_frozen(backbone)
    out = forward(backbone, ["basil"], [Image.new("RGB", (64, 64))])
    assert out.pooler_output.shape == (1, 32)


def fake_hub_cache(cache, repo_id, folder):
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/files}."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    return snapshot


def test_hub_id_is_read_from_the_local_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder = write_random_backbone(tmp_path / "vilt", hidden_size=32, num_hidden_layers=1)
    snapshot = fake_hub_cache(tmp_path / "hub", VILT_B32, folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_backbone(VILT_B32) == snapshot.resolve()
    check_backbone_available(VILT_B32)
    backbone = load_backbone(ModelConfig(backbone=VILT_B32, max_text_len=48), data_square=32)
    assert backbone.max_text_len == 48 and backbone.vilt.config.max_position_embeddings == 48
    assert backbone.image_size == 32


def test_square_option_forces_a_square_resize(tmp_path):
    folder = write_random_backbone(tmp_path / "vilt", hidden_size=32, num_hidden_layers=1)
    backbone = load_backbone(ModelConfig(backbone=str(folder)), data_square=48)
    out = backbone.image_processor(
        [Image.new("RGB", (100, 30)), Image.new("RGB", (20, 90))], return_tensors="pt"
    )
    assert out["pixel_values"].shape == (2, 3, 48, 48) and bool(out["pixel_mask"].all())
    with pytest.raises(BackboneError, match="data.square"):
        load_backbone(ModelConfig(backbone=str(folder)), data_square=40)  # not a multiple of patch 16


def test_vilt_b32_rule_without_a_preprocessor_file(tmp_path):
    folder = write_random_backbone(tmp_path / "vilt", hidden_size=32, num_hidden_layers=1, patch_size=32)
    (folder / "preprocessor_config.json").unlink()
    processor = load_backbone(ModelConfig(backbone=str(folder))).image_processor
    out = processor([Image.new("RGB", (1000, 500))], return_tensors="pt")
    height, width = out["pixel_values"].shape[-2:]
    assert height == 320 and width <= 640 and width % 32 == 0  # shortest 384 capped by longest <= 640


# ----------------------------------------------------------------------------------------------------------
# Missing weights: a clear error, before any training


def test_missing_hub_model_error_is_clear_and_immediate(tmp_path, monkeypatch):
    from huggingface_hub import constants
    from transformers import ViltModel

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))

    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not be built before the availability check")

    monkeypatch.setattr(ViltModel, "from_pretrained", no_loading)
    with pytest.raises(BackboneError) as err:
        check_backbone_available(VILT_B32)
    message = str(err.value)
    for needle in [
        "model.backbone",
        "HF_HOME",
        f"hf download {VILT_B32}",
        "snapshot_download",
        "~/.cache/huggingface",
    ]:
        assert needle in message, needle
    assert isinstance(err.value, ConfigError)
    with pytest.raises(BackboneError, match="model.backbone"):
        load_backbone(ModelConfig(backbone=VILT_B32))


def test_missing_folder_and_incomplete_folder(tmp_path, monkeypatch):
    with pytest.raises(BackboneError, match="no such folder"):
        check_backbone_available(str(tmp_path / "nowhere" / "vilt"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BackboneError, match="model.safetensors"):
        check_backbone_available(str(tmp_path))
    monkeypatch.setattr("delo.vilt.backbone.TINY_DIR", tmp_path)
    with pytest.raises(BackboneError, match="pretrain_backbone.py"):
        check_backbone_available("tiny")


# ----------------------------------------------------------------------------------------------------------
# Longer text: the position table is stretched, never re-initialised


def test_interpolation_keeps_ends_and_puts_rows_between_neighbours():
    vilt = build_random_vilt(max_position_embeddings=8)
    old = vilt.embeddings.text_embeddings.position_embeddings.weight.detach().clone()
    interpolate_text_positions(vilt, 21)
    new = vilt.embeddings.text_embeddings.position_embeddings.weight.detach()
    assert new.shape == (21, old.shape[1])
    assert torch.equal(new[0], old[0]) and torch.equal(new[-1], old[-1])
    for i in range(21):
        x = i * 7 / 20  # the stretched position of new row i on the old table
        lo, hi = int(np.floor(x)), int(np.ceil(x))
        low, high = torch.minimum(old[lo], old[hi]), torch.maximum(old[lo], old[hi])
        assert bool(((low <= new[i]) & (new[i] <= high)).all()), i
    text = vilt.embeddings.text_embeddings
    assert vilt.config.max_position_embeddings == 21
    assert torch.equal(text.position_ids, torch.arange(21)[None])
    assert not text.position_embeddings.weight.requires_grad


def test_interpolation_values_by_hand():
    vilt = build_random_vilt(max_position_embeddings=3, hidden_size=32)
    table = torch.tensor([0.0, 4.0, 8.0])[:, None].repeat(1, 32)
    vilt.embeddings.text_embeddings.position_embeddings.weight.data.copy_(table)
    interpolate_text_positions(vilt, 5)
    new = vilt.embeddings.text_embeddings.position_embeddings.weight[:, 0]
    assert new.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_longer_text_runs_after_interpolation(tiny):
    vilt = build_random_vilt()
    ids = torch.full((1, 41), 5)
    pix = torch.zeros(1, 3, 64, 64)
    with pytest.raises(RuntimeError):
        vilt(input_ids=ids, pixel_values=pix)  # 41 tokens vs a 40-row table
    interpolate_text_positions(vilt, 64)
    assert vilt(input_ids=ids, pixel_values=pix).last_hidden_state.shape[1] == 41 + 1 + 16

    long = load_backbone(ModelConfig(max_text_len=64))
    table = long.vilt.embeddings.text_embeddings.position_embeddings.weight
    original = tiny.vilt.embeddings.text_embeddings.position_embeddings.weight
    assert long.max_text_len == 64 and table.shape[0] == 64
    assert torch.equal(table[0], original[0]) and torch.equal(table[-1], original[-1])


def test_random_vilt_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = build_random_vilt(seed=3), build_random_vilt(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not any(p.requires_grad for p in a.parameters()) and not a.training
