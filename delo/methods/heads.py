"""Classifier heads and the classification loss every method trains them with.

Global label ids are contiguous per task (task k owns ``[offset_k, offset_k + C_k)``), so the heads' logits,
concatenated in task order, are the global columns. Two read-outs (protocol.md §7): task-agnostic, where each
sample's task comes from the method (its keys, or the owner of the best column over every seen class), and
task-aware, with the true task; either way a :class:`~delo.methods.base.Prediction` keeps the chosen task's
columns and -inf elsewhere.

Two head classes share one interface (:class:`Heads`): :class:`TaskHeads`, one linear head per task, frozen once
a later task begins (every method's default); and :class:`SharedMLPHead`, one 2-layer MLP classifier over all
classes whose output grows by a task's rows and stays trainable as a whole (MAP's code). What a task trains
(``parameters_of``), what its state holds (``named_tensors``) and what a later task freezes (``freeze``) are the
head's own rules; :meth:`delo.methods.base.ContinualMethod.begin_task` only calls them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

HeadInit = Literal["torch", "trunc_normal"]


@dataclass
class Prediction:
    task: Tensor  # (B,) long predicted task (the true one in the task-aware read-out)
    scores: Tensor  # (B, C_total) logits in the predicted task's label columns, -inf elsewhere


class Heads(nn.Module, ABC):
    """The columns of every task seen so far over a (B, d) feature, and the read-outs on them."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.tasks = 0  # tasks added so far
        self.register_buffer("column_task", torch.zeros(0, dtype=torch.long), persistent=False)

    # -- what a head class implements ------------------------------------------------------------------------

    @abstractmethod
    def _add(self, num_classes: int, like: Tensor) -> None:
        """Create the next task's output rows (and, at the first task, what every task shares)."""

    @abstractmethod
    def logits(self, pooled: Tensor) -> Tensor:
        """(B, C_seen) every task's logits, contiguous per task."""

    @abstractmethod
    def head_logits(self, pooled: Tensor, k: int) -> Tensor:
        """(B, C_k) task k's logits alone."""

    @abstractmethod
    def parameters_of(self, k: int) -> list[nn.Parameter]:
        """What task k's optimiser trains of the head."""

    @abstractmethod
    def named_tensors(self, k: int) -> dict[str, Tensor]:
        """The head's part of task k's state (``head.<name>``; shared tensors as they are now)."""

    @abstractmethod
    def freeze(self, k: int) -> None:
        """Called for every earlier task j < k when task k begins: freeze what task j alone owns."""

    # -- the rest, once --------------------------------------------------------------------------------------

    def add(self, num_classes: int, like: Tensor) -> None:
        """The next task's columns, on ``like``'s device and dtype (init draws from the global RNG)."""
        self._add(num_classes, like)
        column = torch.full((num_classes,), self.tasks, dtype=torch.long, device=like.device)
        self.column_task = torch.cat([self.column_task, column])
        self.tasks += 1

    @property
    def num_columns(self) -> int:
        return int(self.column_task.numel())

    def predict(self, pooled: Tensor, task: Tensor | None = None) -> Prediction:
        """``task`` (B,) the true task (task-aware) or the method's choice, or None: each sample's task is the
        owner of its best-scoring seen column (class-incremental); the scores keep that task's columns, -inf
        elsewhere."""
        logits = self.logits(pooled)  # (B, C_seen)
        if task is None:
            task = self.column_task[logits.argmax(dim=1)]  # (B,)
        return Prediction(task=task.long(), scores=self.masked(logits, task))

    def masked(self, logits: Tensor, task: Tensor) -> Tensor:
        """(B, C_seen) logits with every column outside sample b's task ``task[b]`` set to -inf."""
        return logits.masked_fill(self.column_task[None, :] != task[:, None], -torch.inf)

    def scores_of(self, pooled: Tensor, k: int, offset: int) -> Tensor:
        """(B, C_seen) task k's logits alone in its columns, -inf elsewhere (no other task's rows run)."""
        logits = self.head_logits(pooled, k)  # (B, C_k)
        after = self.num_columns - offset - logits.shape[1]
        return F.pad(logits, (offset, after), value=-torch.inf)

    def task_logits(self, pooled: Tensor, k: int, seen: bool) -> Tensor:
        """Training logits of task k: task k's alone (``seen=False``, (B, C_k)) or every seen task's ((B,
        C_seen), for methods that train a classifier over all classes seen so far)."""
        return self.logits(pooled) if seen else self.head_logits(pooled, k)


class TaskHeads(Heads):
    """One linear head per task over a (B, d) feature; a task's head is frozen once a later task begins.

    ``init``: ``torch`` (``nn.Linear``'s own init, every method's default) or ``trunc_normal`` (weights
    trunc-normal, std 0.02, bias 0: timm's ViT head init, which the L2P and DualPrompt reference code uses).
    """

    def __init__(self, hidden: int, init: HeadInit = "torch") -> None:
        super().__init__(hidden)
        if init not in ("torch", "trunc_normal"):
            raise ValueError(f"unknown head init {init!r}; expected 'torch' or 'trunc_normal'")
        self.init = init
        self.heads = nn.ModuleList()

    def _add(self, num_classes: int, like: Tensor) -> None:
        if self.init == "torch":
            head = nn.Linear(self.hidden, num_classes)
        else:
            head = nn.utils.skip_init(nn.Linear, self.hidden, num_classes)
            nn.init.trunc_normal_(head.weight, std=0.02)  # bounds +-2 (timm's): at std 0.02 they never bind
            nn.init.zeros_(head.bias)
        self.heads.append(head.to(device=like.device, dtype=like.dtype))

    def logits(self, pooled: Tensor) -> Tensor:
        return torch.cat([head(pooled) for head in self.heads], dim=1)

    def head_logits(self, pooled: Tensor, k: int) -> Tensor:
        return self.heads[k](pooled)

    def parameters_of(self, k: int) -> list[nn.Parameter]:
        return list(self.heads[k].parameters())

    def named_tensors(self, k: int) -> dict[str, Tensor]:
        """Head k's tensors as they travel in a task state: ``head.weight``, ``head.bias``."""
        return {f"head.{name}": p for name, p in self.heads[k].named_parameters()}

    def freeze(self, k: int) -> None:
        for p in self.parameters_of(k):
            p.requires_grad_(False)


class SharedMLPHead(Heads):
    """One 2-layer MLP classifier over every class seen so far (MAP's code, the ViLT downstream classifier):
    ``Linear(d, 2d), LayerNorm(2d), GELU`` shared by all classes, then one output row per class. A task adds its
    rows; nothing is ever frozen: every task trains the shared layers and every row seen so far.

    Init as MAP's ``init_weights``: linear weights N(0, 0.02), biases 0, LayerNorm weight 1 and bias 0.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__(hidden)
        self.body: nn.Sequential | None = None  # created with the first task's rows (device, dtype)
        self.rows = nn.ModuleList()  # per task: nn.Linear(2d, C_k), its block of output rows

    @staticmethod
    def _linear(d_in: int, d_out: int, like: Tensor) -> nn.Linear:
        linear = nn.utils.skip_init(nn.Linear, d_in, d_out, device=like.device, dtype=like.dtype)
        nn.init.normal_(linear.weight, std=0.02)
        nn.init.zeros_(linear.bias)
        return linear

    def _add(self, num_classes: int, like: Tensor) -> None:
        wide = 2 * self.hidden
        if self.body is None:
            norm = nn.LayerNorm(wide, device=like.device, dtype=like.dtype)  # weight 1, bias 0
            self.body = nn.Sequential(self._linear(self.hidden, wide, like), norm, nn.GELU())
        self.rows.append(self._linear(wide, num_classes, like))

    def logits(self, pooled: Tensor) -> Tensor:
        hidden = self.body(pooled)  # (B, 2d)
        return torch.cat([rows(hidden) for rows in self.rows], dim=1)

    def head_logits(self, pooled: Tensor, k: int) -> Tensor:
        return self.rows[k](self.body(pooled))

    def parameters_of(self, k: int) -> list[nn.Parameter]:
        """The shared layers and every row seen up to task k (old rows stay in the optimiser, as in MAP)."""
        return [*self.body.parameters(), *(p for rows in self.rows[: k + 1] for p in rows.parameters())]

    def named_tensors(self, k: int) -> dict[str, Tensor]:
        """``head.body.*`` and ``head.rows.<j>.*`` for j <= k, as they are now (at task k's end in its state)."""
        tensors = {f"head.body.{name}": p for name, p in self.body.named_parameters()}
        for j, rows in enumerate(self.rows[: k + 1]):
            tensors.update({f"head.rows.{j}.{name}": p for name, p in rows.named_parameters()})
        return tensors

    def freeze(self, k: int) -> None:
        """Nothing: the shared layers and old rows keep training (MAP's protocol has no anti-forgetting)."""


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


__all__ = ["HeadInit", "Heads", "Prediction", "SharedMLPHead", "TaskHeads", "classification_loss"]
