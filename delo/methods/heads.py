"""Per-task classifier heads and the classification loss every method trains them with.

Global label ids are contiguous per task (task k owns ``[offset_k, offset_k + C_k)``), so the heads' logits,
concatenated in task order, are the global columns. Two read-outs (protocol.md §7): task-agnostic, where each
sample's task comes from the method (its keys, or the owner of the best column over every seen class), and
task-aware, with the true task; either way a :class:`~delo.methods.base.Prediction` keeps the chosen task's
columns and -inf elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass
class Prediction:
    task: Tensor  # (B,) long predicted task (the true one in the task-aware read-out)
    scores: Tensor  # (B, C_total) logits in the predicted task's label columns, -inf elsewhere


class TaskHeads(nn.Module):
    """One linear head per task over a (B, d) feature (ViLT's pooled output for every method here)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.heads = nn.ModuleList()
        self.register_buffer("column_task", torch.zeros(0, dtype=torch.long), persistent=False)

    def add(self, num_classes: int, like: Tensor) -> nn.Linear:
        """Head of the next task (``nn.Linear``'s init from the global RNG), on ``like``'s device and dtype."""
        head = nn.Linear(self.hidden, num_classes).to(device=like.device, dtype=like.dtype)
        self.heads.append(head)
        k = len(self.heads) - 1
        column = torch.full((num_classes,), k, dtype=torch.long, device=like.device)
        self.column_task = torch.cat([self.column_task, column])
        return head

    @property
    def num_columns(self) -> int:
        return int(self.column_task.numel())

    def logits(self, pooled: Tensor) -> Tensor:
        """(B, C_seen) every head's logits, contiguous per task."""
        return torch.cat([head(pooled) for head in self.heads], dim=1)

    def predict(self, pooled: Tensor, task: Tensor | None = None) -> Prediction:
        """``task`` (B,) the true task (task-aware), or None: each sample's task is the owner of its best-scoring
        seen column (class-incremental); the scores keep that task's columns, -inf elsewhere."""
        logits = self.logits(pooled)  # (B, C_seen)
        if task is None:
            task = self.column_task[logits.argmax(dim=1)]  # (B,)
        return Prediction(task=task.long(), scores=self.masked(logits, task))

    def masked(self, logits: Tensor, task: Tensor) -> Tensor:
        """(B, C_seen) logits with every column outside sample b's task ``task[b]`` set to -inf."""
        return logits.masked_fill(self.column_task[None, :] != task[:, None], -torch.inf)

    def scores_of(self, pooled: Tensor, k: int, offset: int) -> Tensor:
        """(B, C_seen) head k alone in its columns, -inf elsewhere (no other head runs)."""
        logits = self.heads[k](pooled)  # (B, C_k)
        after = self.num_columns - offset - logits.shape[1]
        return F.pad(logits, (offset, after), value=-torch.inf)

    def task_logits(self, pooled: Tensor, k: int, seen: bool) -> Tensor:
        """Training logits of task k: head k alone (``seen=False``, (B, C_k)) or every seen head ((B, C_seen),
        for methods that train a classifier over all classes seen so far)."""
        return self.logits(pooled) if seen else self.heads[k](pooled)

    def parameters_of(self, k: int) -> list[nn.Parameter]:
        return list(self.heads[k].parameters())

    def named_tensors(self, k: int) -> dict[str, Tensor]:
        """Head k's tensors as they travel in a task state: ``head.weight``, ``head.bias``."""
        return {f"head.{name}": p for name, p in self.heads[k].named_parameters()}


def classification_loss(logits: Tensor, labels: Tensor, span: slice, multilabel: bool) -> Tensor:
    """CE over the columns ``span`` with labels local to it, or mean BCE over those label columns.

    logits: (B, span.stop - span.start); labels: (B,) global ids, or (B, C_total) multi-hot.
    """
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels[:, span].to(logits.dtype))
    local = labels.long() - span.start
    if not bool(((local >= 0) & (local < logits.shape[1])).all()):
        raise ValueError(f"labels outside task's global ids [{span.start}, {span.stop}) in a training batch")
    return F.cross_entropy(logits, local)


__all__ = ["Prediction", "TaskHeads", "classification_loss"]
