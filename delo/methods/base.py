"""The contract every continual method meets, so the runner, evaluator, checkpoints and sweeps stay method-blind.

``delo.train`` and ``delo.evaluate`` talk to a model only through :class:`ContinualMethod`; DeLo
(:class:`delo.model.DeLoModel`) and every comparator (docs/methods.md) subclass it. The frozen ViLT is always
``self.vilt`` (``requires_grad`` False, eval mode); a method adds its own trainable tensors around it.

Task lifecycle, called by the runner for k = 0, 1, ...:
``begin_task(k, num_classes, offset)`` (new head / pools / prompts; freeze what the method freezes) ->
``task_parameter_groups(k)`` (what the optimiser gets) -> ``training_loss(batch, k, loss_cfg)`` per step ->
``end_task(k, make_loader)`` (statistics a method accumulates at a task's end, e.g. importance) -> evaluation through
``predict`` -> ``task_state(k)`` into the task's checkpoint. A resumed run calls ``begin_task(j)`` and
``load_task_state(j, state_j)`` for j = 0..k in order, and must then equal the model at the end of task k: a
method whose shared tensors keep training puts their value at task k's end into ``task_state(k)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class Prediction:
    task: Tensor  # (B,) long predicted task (the true one when oracle)
    scores: Tensor  # (B, C_total) logits in the predicted task's label columns, -inf elsewhere


@dataclass
class MethodLoss:
    """One training step's loss: ``total`` (backward runs on it) and its named parts (logged as
    ``train_loss_<name>``; each a scalar tensor, already weighted or not as the method documents)."""

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


class ContinualMethod(nn.Module):
    """Base class: the hooks a method must implement raise; the optional ones have neutral defaults."""

    #: True when task k's tensors never change after task k (the evaluator may then reuse predictions and
    #: needs ``infer_task``); False for methods whose shared parameters keep training.
    frozen_after_task: bool = False

    def __init__(self, vilt: nn.Module, multilabel: bool) -> None:
        super().__init__()
        if getattr(vilt, "pooler", None) is None:
            raise ValueError(
                "the heads read ViLT's pooled output: build the ViltModel with its pooling layer"
            )
        self.vilt = vilt.eval().requires_grad_(False)
        self.multilabel = multilabel
        self.hidden = vilt.config.hidden_size
        self.num_classes: list[int] = []
        self.offsets: list[int] = []

    # -- required -------------------------------------------------------------------------------------------

    def begin_task(self, k: int, num_classes: int, offset: int) -> None:
        raise NotImplementedError

    def task_parameter_groups(self, k: int) -> dict[str, list[nn.Parameter]]:
        """``factors`` (lr ``train.lr``) and ``routers`` (lr ``train.lr * train.router_lr_mult``; may be empty)."""
        raise NotImplementedError

    def training_loss(self, batch: dict, task: int, loss_cfg, record_rows: bool = False) -> MethodLoss:
        raise NotImplementedError

    def predict(self, batch: dict, oracle: bool = False) -> Prediction:
        """Task-agnostic (never reads ``batch["task"]``) or, with ``oracle``, with the true task."""
        raise NotImplementedError

    def task_state(self, k: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def load_task_state(self, k: int, state: dict[str, Tensor]) -> None:
        raise NotImplementedError

    # -- optional -------------------------------------------------------------------------------------------

    @property
    def num_tasks(self) -> int:
        return len(self.num_classes)

    def _register_task(self, k: int, num_classes: int, offset: int) -> None:
        """Check the task order and contiguous label ids, and record the task's classes."""
        if k != self.num_tasks:
            raise ValueError(f"tasks begin in order: expected task {self.num_tasks}, got {k}")
        if offset != sum(self.num_classes):
            raise ValueError(
                f"task {k} offset {offset} != {sum(self.num_classes)}: label ids are contiguous per task"
            )
        self.num_classes.append(num_classes)
        self.offsets.append(offset)

    def head_span(self, k: int) -> slice:
        """Task k's global label columns."""
        return slice(self.offsets[k], self.offsets[k] + self.num_classes[k])

    def task_parameters(self, k: int) -> list[nn.Parameter]:
        groups = self.task_parameter_groups(k)
        return groups["factors"] + groups["routers"]

    def end_task(self, k: int, make_loader) -> None:
        """After task k's training, before its evaluation; ``make_loader()`` gives a loader of task k's train
        split (not shuffled, eval batch size, on the CPU: move batches with ``delo.runtime.move_batch``)."""

    def infer_task(self, batch: dict) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not frozen after a task: no prediction reuse")

    def enable_routing_stats(self, enabled: bool = True) -> None:
        """Routing statistics are DeLo's (TensorBoard ``routing/``); other methods record none."""

    def routing_stats(self) -> dict[str, dict]:
        return {"selection": {}, "query_cos": {}}

    def parameter_counts(self) -> dict[str, int]:
        """``trainable``: what the latest task's optimiser gets; ``total``: every parameter incl. the backbone;
        ``adapters_per_task``: ``trainable`` minus the latest task's head (the head is shared-shape across
        methods, so this is the adapter's own size)."""
        last = self.num_tasks - 1
        trainable = sum(p.numel() for p in self.task_parameters(last))
        return {
            "adapters_per_task": trainable - self.head_parameters(last),
            "trainable": trainable,
            "total": sum(p.numel() for p in self.parameters()),
        }

    def head_parameters(self, k: int) -> int:
        """Parameters of task k's classifier inside ``task_parameters(k)``."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> ContinualMethod:
        super().train(mode)
        self.vilt.eval()  # the frozen backbone never runs dropout
        return self

    def run_vilt(self, batch: dict, **kwargs):
        """The frozen ViLT on a batch (``kwargs`` e.g. ``inputs_embeds`` / ``image_embeds`` for prompt methods)."""
        return self.vilt(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
            pixel_values=batch["pixel_values"],
            pixel_mask=batch["pixel_mask"],
            **kwargs,
        )


class TaskHeads(nn.Module):
    """One linear head per task over the pooled output, with the two read-outs the comparators use.

    ``seen`` (class-incremental, task-agnostic): the predicted task is the one owning the best-scoring seen column
    (multi-class: argmax logit; multi-label: the largest logit), and the scores keep that task's columns only, as
    :class:`Prediction` requires. ``oracle``: the true task's columns.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.heads = nn.ModuleList()
        self.register_buffer("column_task", torch.zeros(0, dtype=torch.long), persistent=False)

    def add(self, num_classes: int, like: Tensor) -> nn.Linear:
        head = nn.Linear(self.hidden, num_classes).to(device=like.device, dtype=like.dtype)
        self.heads.append(head)
        k = len(self.heads) - 1
        column = torch.full((num_classes,), k, dtype=torch.long, device=like.device)
        self.column_task = torch.cat([self.column_task, column])
        return head

    def logits(self, pooled: Tensor) -> Tensor:
        """(B, C_seen) every head's logits, contiguous per task."""
        return torch.cat([head(pooled) for head in self.heads], dim=1)

    def predict(self, pooled: Tensor, task: Tensor | None = None) -> Prediction:
        """pooled (B, d); ``task`` (B,) the true task for the oracle read-out, None for task-agnostic."""
        logits = self.logits(pooled)  # (B, C_seen)
        if task is None:
            task = self.column_task[logits.argmax(dim=1)]  # (B,)
        scores = logits.masked_fill(self.column_task[None, :] != task[:, None], -torch.inf)
        return Prediction(task=task.long(), scores=scores)

    def task_logits(self, pooled: Tensor, k: int, seen: bool) -> Tensor:
        """Training logits of task k: head k alone (``seen=False``, (B, C_k)) or every seen head ((B, C_seen),
        for methods that train a class-incremental classifier over all classes seen so far)."""
        return self.logits(pooled) if seen else self.heads[k](pooled)


def check_state_names(k: int, live: dict[str, Tensor], state: dict[str, Tensor]) -> None:
    """A task state must name exactly the live tensors of task k."""
    missing, unexpected = sorted(set(live) - set(state)), sorted(set(state) - set(live))
    if missing or unexpected:
        raise KeyError(f"task {k} state mismatch: missing {missing}, unexpected {unexpected}")


def copy_state_tensor(k: int, name: str, tensor: Tensor, saved: Tensor) -> None:
    """Copy one saved tensor of task k's state into the live one; shapes must match."""
    if tensor.shape != saved.shape:
        raise ValueError(f"task {k} state {name}: shape {tuple(saved.shape)} != {tuple(tensor.shape)}")
    tensor.copy_(saved)


@torch.no_grad()
def load_state_tensors(k: int, live: dict[str, Tensor], state: dict[str, Tensor]) -> None:
    """``load_task_state``'s common body: names must match exactly, then each tensor is copied in place."""
    check_state_names(k, live, state)
    for name, tensor in live.items():
        copy_state_tensor(k, name, tensor, state[name])


__all__ = [
    "ContinualMethod",
    "MethodLoss",
    "Prediction",
    "TaskHeads",
    "check_state_names",
    "copy_state_tensor",
    "load_state_tensors",
]
