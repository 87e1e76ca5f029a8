"""Batches and a short training loop shared by the shared-expert method tests (rank1_pool, moe_lora, pass_moe)."""

import torch
from tiny_vilt import tiny_vilt

from delo.config import ModelConfig, RunConfig
from delo.methods import build_method


def make_batch(n: int = 4, seed: int = 1, task: int = 0, offset: int = 0, classes: int = 3) -> dict:
    """A random complete batch for the tiny ViLT whose labels belong to ``task`` (global ids offset..offset+C)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(0, 99, (n, 8), generator=g),
        "attention_mask": torch.ones(n, 8, dtype=torch.long),
        "token_type_ids": torch.zeros(n, 8, dtype=torch.long),
        "pixel_values": torch.randn(n, 3, 32, 32, generator=g),
        "pixel_mask": torch.ones(n, 32, 32, dtype=torch.long),
        "labels": offset + torch.randint(0, classes, (n,), generator=g),
        "missing": torch.zeros(n, dtype=torch.long),
        "task": torch.full((n,), task, dtype=torch.long),
    }


def build(method: str, **sections) -> torch.nn.Module:
    """A fresh model of ``method`` on the tiny ViLT; ``sections`` e.g. ``rank1_pool={"k": 2}``."""
    return build_method(
        tiny_vilt(), RunConfig(model=ModelConfig(method=method, **sections)), multilabel=False
    )


TASKS = [(3, 0), (2, 3)]  # (classes, offset) of two tasks


def train_task(model, k: int, steps: int = 3, seed: int = 0) -> None:
    """begin_task(k) (seeded), a few AdamW steps on task k's batches, end_task(k)."""
    classes, offset = TASKS[k]
    torch.manual_seed(100 + k)
    model.begin_task(k, classes, offset)
    params = model.task_parameters(k)
    opt = torch.optim.AdamW(params, lr=5e-2)
    model.train()
    for step in range(steps):
        batch = make_batch(seed=seed + 10 * k + step, task=k, offset=offset, classes=classes)
        loss = model.training_loss(batch, k).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.end_task(k, lambda: [make_batch(seed=50 + k, task=k, offset=offset, classes=classes)])
