"""Task-Key Memory: one key per learned task, task inference by cosine argmax (method.md §6)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class TaskKeyMemory(nn.Module):
    """Keys (T, d): a zero-initialised buffer, never trained by the optimiser, saved with each task's state."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(0, dim))

    def __len__(self) -> int:
        return self.keys.shape[0]

    def add_task(self) -> None:
        self.keys = torch.cat([self.keys, self.keys.new_zeros(1, self.keys.shape[1])])

    @torch.no_grad()
    def update(self, task: int, u: Tensor, beta: float) -> None:
        """key_k <- beta * key_k + (1 - beta) * mean_batch(u); no bias correction, cosine ignores scale."""
        mean = u.to(self.keys.dtype).mean(dim=0)  # (B, d) -> (d,)
        self.keys[task] = beta * self.keys[task] + (1.0 - beta) * mean

    @torch.no_grad()
    def infer(self, u: Tensor) -> Tensor:
        """(B, d) queries -> (B,) long: per-sample argmax_j cos(u, key_j) over the learned tasks (no batch vote).

        A key still at zero has cosine 0 with everything.
        """
        cos = F.normalize(u.to(self.keys.dtype), dim=-1) @ F.normalize(self.keys, dim=-1).T  # (B, d) @ (d, T)
        return cos.argmax(dim=-1)
