"""The contract every continual method meets, so the runner, evaluator, checkpoints and sweeps stay method-blind.

``delo.train`` and ``delo.evaluate`` talk to a model only through :class:`ContinualMethod`; DeLo
(:class:`delo.methods.delo.model.DeLoModel`) and every comparator subclass it. The frozen ViLT is always
``self.vilt`` (``requires_grad`` False, eval mode; a method whose reference trains ViLT's pooler, MAP / MSP, turns
it back on and owns it as its tensor); a method adds its own trainable tensors around it and gets its heads from
here (:class:`~delo.methods.heads.TaskHeads` by default, or the :class:`~delo.methods.heads.Heads` it passes).

Task lifecycle, called by the runner for k = 0, 1, ...:
``begin_task(k, num_classes, offset)`` (one implementation, here: record the task, freeze what earlier tasks own,
add the method's tensors of task k and its head) -> ``task_parameter_groups(k)`` (what the optimiser gets) ->
``training_loss(batch, k)`` per step -> ``end_task(k, make_loader)`` (statistics a method accumulates at a task's
end, e.g. importance) -> evaluation through ``predict`` -> ``task_state(k)`` into the task's checkpoint. A resumed
run calls ``begin_task(j)`` and ``load_task_state(j, state_j)`` for j = 0..k in order, and must then equal the
model at the end of task k: a method whose shared tensors keep training puts their value at task k's end into
``task_state(k)``.

Optional capability: :class:`RoutingDiagnostics` (routing statistics in TensorBoard, training dynamics); the
runner asks ``isinstance(model, RoutingDiagnostics)``, never a method's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from delo.methods.heads import Heads, Prediction, TaskHeads

if TYPE_CHECKING:
    from delo.config import RunConfig


@dataclass
class MethodLoss:
    """One training step's loss: ``total`` (backward runs on it) and its named parts (logged as
    ``train_loss_<name>``; each a scalar tensor, already weighted or not as the method documents)."""

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class ParameterGroups:
    """Task k's trainable tensors by learning rate: ``main`` at ``train.lr`` (adapters, prompts, the head),
    ``routing`` at ``train.lr * train.router_lr_mult`` (routers and routing maps; empty for most methods)."""

    main: list[nn.Parameter]
    routing: list[nn.Parameter] = field(default_factory=list)

    def all(self) -> list[nn.Parameter]:
        return self.main + self.routing


class ContinualMethod(nn.Module, ABC):
    """A continual method on the frozen ViLT. Subclasses implement the abstract hooks; the task lifecycle, the
    heads and the parameter counts are implemented once, here."""

    frozen_after_task: bool = False
    """True when task k's tensors never change after task k (the evaluator may then reuse predictions and needs
    ``infer_task``), and begin_task freezes all of an earlier task's tensors; False for methods whose shared
    tensors keep training (begin_task then freezes only what the heads' own rule freezes: an earlier per-task
    head, never a shared classifier)."""

    head_first: bool = True
    """Order of task k's random draws in ``begin_task``: the head before the method's own tensors (True) or after
    (False). Part of a run's identity: changing it changes every number a seed gives."""

    max_grad_norm: float | None = None
    """When set, the runner clips the gradient of task k's parameters (``task_parameters(k)``) to this total L2
    norm after every backward, before the optimiser step (``torch.nn.utils.clip_grad_norm_``); None: no clipping.
    A method sets it from its config where its reference code clips (L2P, DualPrompt: 1.0)."""

    @classmethod
    def from_config(cls, vilt: nn.Module, cfg: RunConfig, multilabel: bool) -> ContinualMethod:
        """The model of ``cfg`` (a method whose loss reads a top-level section, as DeLo's ``loss``, overrides)."""
        return cls(vilt, cfg.model, multilabel)

    def __init__(self, vilt: nn.Module, multilabel: bool, heads: Heads | None = None) -> None:
        """``heads``: the method's classifier (default :class:`TaskHeads`, one linear head per task)."""
        super().__init__()
        if getattr(vilt, "pooler", None) is None:
            raise ValueError(
                "the heads read ViLT's pooled output: build the ViltModel with its pooling layer"
            )
        self.vilt = vilt.eval().requires_grad_(False)
        self.multilabel = multilabel
        self.hidden = vilt.config.hidden_size
        self.heads = TaskHeads(self.hidden) if heads is None else heads
        self.num_classes: list[int] = []
        self.offsets: list[int] = []

    # -- what a method implements ---------------------------------------------------------------------------

    @abstractmethod
    def add_task(self, k: int) -> None:
        """Create the method's own tensors of task k (pools, prompts, keys, ...; not the head)."""

    @abstractmethod
    def adapter_groups(self, k: int) -> ParameterGroups:
        """Task k's trainable tensors other than its head (shared tensors included where they keep training)."""

    @abstractmethod
    def state_tensors(self, k: int) -> dict[str, Tensor]:
        """The live tensors of task k's state other than its head, by name: task k's own, and the shared ones as
        they are now (``task_state`` copies them at task k's end)."""

    @abstractmethod
    def training_loss(self, batch: dict, task: int) -> MethodLoss:
        """The loss of one training step on task ``task``."""

    @abstractmethod
    def predict(self, batch: dict, task_aware: bool = False) -> Prediction:
        """Task-agnostic (never reads ``batch["task"]``) or, with ``task_aware``, with the true task."""

    def end_task(self, k: int, make_loader) -> None:
        """After task k's training, before its evaluation; ``make_loader()`` gives a loader of task k's train
        split (not shuffled, eval batch size, on the CPU: move batches with ``delo.runtime.move_batch``)."""

    def infer_task(self, batch: dict) -> Tensor:
        """(B,) each sample's task, for the evaluator's prediction reuse (``frozen_after_task`` methods only)."""
        raise TypeError(f"{type(self).__name__} is not frozen after a task: no prediction reuse")

    # -- the task lifecycle ---------------------------------------------------------------------------------

    @property
    def num_tasks(self) -> int:
        return len(self.num_classes)

    def begin_task(self, k: int, num_classes: int, offset: int) -> None:
        """Record task k (in order, contiguous label ids), freeze what earlier tasks own, add task k's tensors and
        head. Freezing: every earlier task's own tensors when ``frozen_after_task``; the head's rule
        (``heads.freeze(j)``: a per-task head is frozen, a shared classifier is not) either way."""
        if k != self.num_tasks:
            raise ValueError(f"tasks begin in order: expected task {self.num_tasks}, got {k}")
        if offset != sum(self.num_classes):
            raise ValueError(
                f"task {k} offset {offset} != {sum(self.num_classes)}: label ids are contiguous per task"
            )
        self.num_classes.append(num_classes)
        self.offsets.append(offset)
        for j in range(k):
            if self.frozen_after_task:
                for p in self.adapter_groups(j).all():
                    p.requires_grad_(False)
            self.heads.freeze(j)
        like = self.vilt.pooler.dense.weight
        if self.head_first:
            self.heads.add(num_classes, like)
            self.add_task(k)
        else:
            self.add_task(k)
            self.heads.add(num_classes, like)

    def check_task(self, k: int) -> None:
        if not 0 <= k < self.num_tasks:
            raise IndexError(f"task {k} has not begun ({self.num_tasks} tasks so far)")

    def head_span(self, k: int) -> slice:
        """Task k's global label columns."""
        return slice(self.offsets[k], self.offsets[k] + self.num_classes[k])

    def task_parameter_groups(self, k: int) -> ParameterGroups:
        """What task k's optimiser gets: the method's groups, task k's head appended to ``main``."""
        self.check_task(k)
        groups = self.adapter_groups(k)
        return ParameterGroups(main=groups.main + self.heads.parameters_of(k), routing=groups.routing)

    def task_parameters(self, k: int) -> list[nn.Parameter]:
        return self.task_parameter_groups(k).all()

    def task_tensors(self, k: int) -> dict[str, Tensor]:
        """Every live tensor of task k's state: ``state_tensors(k)`` and the head's."""
        self.check_task(k)
        return {**self.state_tensors(k), **self.heads.named_tensors(k)}

    def task_state(self, k: int) -> dict[str, Tensor]:
        """Copies of task k's state tensors (what a resumed run replays)."""
        return {name: t.detach().clone() for name, t in self.task_tensors(k).items()}

    @torch.no_grad()
    def load_task_state(self, k: int, state: dict[str, Tensor]) -> None:
        """Load ``task_state(k)`` output into a model where task k has begun; names and shapes must match."""
        load_state_tensors(k, self.task_tensors(k), state)

    def parameter_counts(self) -> dict[str, int]:
        """``trainable``: what the latest task's optimiser gets; ``total``: every parameter incl. the backbone;
        ``adapters_per_task``: ``trainable`` minus the latest task's head (the head is shared-shape across
        methods, so this is the adapter's own size)."""
        last = self.num_tasks - 1
        trainable = sum(p.numel() for p in self.task_parameters(last))
        head = sum(p.numel() for p in self.heads.parameters_of(last))
        return {
            "adapters_per_task": trainable - head,
            "trainable": trainable,
            "total": sum(p.numel() for p in self.parameters()),
        }

    # -- shared helpers -------------------------------------------------------------------------------------

    def train(self, mode: bool = True) -> ContinualMethod:
        super().train(mode)
        self.vilt.eval()  # the frozen backbone never runs dropout
        return self

    def run_vilt(self, batch: dict, **kwargs):
        """The ViLT forward on a batch (``kwargs`` e.g. ``inputs_embeds`` / ``image_embeds`` for prompt methods);
        the one place a method calls the backbone."""
        return self.vilt(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
            pixel_values=batch["pixel_values"],
            pixel_mask=batch["pixel_mask"],
            **kwargs,
        )


@runtime_checkable
class TrainingDynamics(Protocol):
    """One task's training-dynamics probe (TensorBoard ``dynamics/``); never changes results."""

    def probe(self) -> None:
        """The reference measurement before the first step."""

    def loss(self, batch: dict, task: int, step: int) -> MethodLoss:
        """The method's training loss of this step, recording what this step measures."""

    def after_backward(self, loss: MethodLoss) -> None: ...

    def epoch_end(self) -> dict[str, float]:
        """The epoch's scalars, tag -> value."""


@runtime_checkable
class RoutingDiagnostics(Protocol):
    """Optional capability of a method that routes inputs (DeLo): routing statistics over the evaluation's
    forwards (TensorBoard ``routing/``) and per-epoch training dynamics."""

    def enable_routing_stats(self, enabled: bool = True) -> None: ...

    def routing_stats(self) -> dict[str, dict]:
        """Pop the statistics accumulated since enabled."""

    def training_dynamics(self, task: int, probe: dict, every: int) -> TrainingDynamics: ...


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
    "ParameterGroups",
    "Prediction",
    "RoutingDiagnostics",
    "TrainingDynamics",
    "check_state_names",
    "copy_state_tensor",
    "load_state_tensors",
]
