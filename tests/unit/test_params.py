"""Parameter counts (method.md §12): formula at ViLT-B/32 dims, and agreement with an instantiated model."""

import pytest
import torch
from transformers import ViltConfig, ViltModel

from delo.config import ModelConfig
from delo.model import DeLoModel
from delo.params import count_model_parameters, count_parameters

VILT_B32 = {"hidden": 768, "num_layers": 12, "backbone_params": 111_595_008}  # default ViltConfig
HEAD = 768 * 10 + 10


@pytest.mark.parametrize("E, adapters", [(16, 3_557_376), (32, 7_151_616)])
@pytest.mark.parametrize("r", [2, 4, 8])
def test_vilt_b32_adapters_per_task(E, adapters, r):
    counts = count_parameters(ModelConfig(E=E, r=r), num_tasks=10, classes_per_task=10, **VILT_B32)
    assert counts["adapters_per_task"] == adapters  # 72 sites x (4 E d + E^2), independent of r
    assert counts["trainable"] == adapters + HEAD
    assert counts["total"] == 111_595_008 + 10 * (adapters + HEAD)


@pytest.mark.parametrize("variant, adapters", [("delo_lora", 221_184), ("unified_pool", 2_672_640)])
def test_vilt_b32_variants(variant, adapters):
    counts = count_parameters(
        ModelConfig(variant=variant, E=16, r=4), num_tasks=10, classes_per_task=10, **VILT_B32
    )
    assert counts["adapters_per_task"] == adapters


@pytest.mark.parametrize(
    "overrides",
    [{}, {"variant": "delo_lora"}, {"variant": "unified_pool"}, {"E": 5, "r": 3},
     {"targets": ("attention.attention.value",)}],
)  # fmt: skip
def test_formula_matches_an_instantiated_model(overrides):
    torch.manual_seed(0)
    config = ViltConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=32, patch_size=16, vocab_size=99, max_position_embeddings=40,
    )  # fmt: skip
    vilt = ViltModel(config)
    backbone = sum(p.numel() for p in vilt.parameters())
    cfg = ModelConfig(**{"E": 4, "r": 2, **overrides})
    model = DeLoModel(vilt, cfg, multilabel=False)
    classes = [3, 2, 4]
    for k, c in enumerate(classes):
        model.begin_task(k, c, sum(classes[:k]))
    expected = count_parameters(
        cfg, hidden=32, num_layers=2, num_tasks=3, classes_per_task=classes, backbone_params=backbone
    )
    assert count_model_parameters(model) == expected
