"""Parameter counts (method.md §12): formula at ViLT-B/32 dims, and agreement with an instantiated model."""

import pytest
import torch
from transformers import ViltConfig, ViltModel

from delo.config import ModelConfig
from delo.methods.delo.model import DeLoModel
from delo.methods.delo.params import count_model_parameters, count_parameters

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


# Paper Table 5 (trainable = one task's adapters; total = backbone with a 512-row text position table + 10 tasks'
# adapters and heads) against the authors' layout (model.entry_rank=r): 72 adapters per task (12 layers x q, k, v x
# 2 modalities), each 2 E r d (rank-r A, B entries) + 2 E (d + 1) (routers with bias) + r d E (compatibility).
BACKBONE_512 = 111_595_008 + (512 - 40) * 768


@pytest.mark.parametrize(
    "E, r, adapter, trainable_m, total_m",
    [(16, 2, 98_336, 7.1, 182.8), (16, 4, 172_064, 12.4, 235.9), (16, 8, 319_520, 23.0, 342.1),
     (32, 2, 196_672, 14.2, 253.6), (32, 4, 344_128, 24.8, 359.8), (32, 8, 639_040, 46.0, 572.1)],
)  # fmt: skip
def test_authors_layout_reproduces_table5(E, r, adapter, trainable_m, total_m):
    cfg = ModelConfig(E=E, r=r, entry_rank="r")
    counts = count_parameters(
        cfg, num_tasks=10, classes_per_task=10, **{**VILT_B32, "backbone_params": BACKBONE_512}
    )
    assert counts["adapters_per_task"] == 72 * adapter
    assert counts["adapters_per_task"] == pytest.approx(trainable_m * 1e6, rel=0.01)
    assert counts["trainable"] == pytest.approx(trainable_m * 1e6, rel=0.01)  # with the head: 7,690 more
    assert counts["total"] == pytest.approx(total_m * 1e6, rel=0.01)
    # the paper's own layout (rank-one entries) does not: its count does not grow with r
    paper = count_parameters(ModelConfig(E=E, r=r), num_tasks=10, classes_per_task=10, **VILT_B32)
    assert paper["adapters_per_task"] != pytest.approx(trainable_m * 1e6, rel=0.01)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"variant": "delo_lora"}, {"variant": "unified_pool"}, {"E": 5, "r": 3},
     {"targets": ("attention.attention.value",)}, {"entry_rank": "r"}, {"entry_rank": "r", "variant": "unified_pool"}],
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
