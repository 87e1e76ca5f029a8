"""The test-only micro ViLT shared by the model and loss tests (transformers' own tester sizes, no download)."""

import torch
from transformers import ViltConfig, ViltModel


def tiny_vilt() -> ViltModel:
    """A random ViltModel (hidden 32, 2 layers, image 32, patch 16), seeded so every test sees the same one."""
    torch.manual_seed(0)
    config = ViltConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=32, patch_size=16, vocab_size=99, max_position_embeddings=40,
    )  # fmt: skip
    return ViltModel(config).eval()
