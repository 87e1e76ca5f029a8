"""``PromptMethod``: what the prompt comparators share on top of :class:`delo.methods.base.ContinualMethod`.

- Per-task heads (:class:`TaskHeads`): task k's head is trained on task k's columns only (what RebQ's code does
  with FREEZE_LOGITS) and frozen afterwards; prediction is task-agnostic over every seen column
  (``TaskHeads.predict(task=None)``) or, with ``oracle``, the true task's columns.
- Task states: a method names its **shared** tensors (trained in every task: their value at task k's end goes into
  every ``task_state(k)``) and task k's **own** tensors (trained in task k only); ``load_task_state`` replays both.
- The frozen, prompt-free query pass (L2P, DualPrompt, RebQ): ViLT's final hidden states without prompts.

A method implements ``_begin(k)``, ``_groups(k)`` (its own trainable tensors for task k's optimiser, head
excluded), ``_shared()`` / ``_own(k)`` (tensors by name) and ``_features(batch, train_task, task)`` -> the (B, d)
feature the heads read plus its auxiliary losses.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.base import ContinualMethod, MethodLoss, Prediction, TaskHeads, load_state_tensors
from delo.methods.delo.loss import classification_loss
from delo.methods.prompts.hooks import PromptHooks

#: auxiliary loss name -> (weight, unweighted value)
AuxLosses = dict[str, tuple[float, Tensor]]


class PromptMethod(ContinualMethod):
    frozen_after_task = (
        False  # shared prompts (or, for RebQ, the weighted sum over all components) keep changing
    )

    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool, prefix: bool) -> None:
        super().__init__(vilt, multilabel)
        self.cfg = cfg
        self.hooks = PromptHooks(self.vilt, prefix)
        self.heads = TaskHeads(self.hidden)

    # -- what a method implements ---------------------------------------------------------------------------

    def _begin(self, k: int) -> None:
        raise NotImplementedError

    def _groups(self, k: int) -> dict[str, list[nn.Parameter]]:
        raise NotImplementedError

    def _shared(self) -> dict[str, Tensor]:
        return {}

    def _own(self, k: int) -> dict[str, Tensor]:
        return {}

    def _features(self, batch: dict, train_task: int | None, task: Tensor | None) -> tuple[Tensor, AuxLosses]:
        """(B, d) feature for the heads and the auxiliary losses; ``train_task`` during training, ``task`` (B,)
        the true task in the oracle read-out (None: task-agnostic)."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.vilt.pooler.dense.weight.device

    def _like(self) -> Tensor:
        return self.vilt.pooler.dense.weight

    def begin_task(self, k: int, num_classes: int, offset: int) -> None:
        self._register_task(k, num_classes, offset)
        for j in range(k):
            self.heads.heads[j].requires_grad_(False)
        self.heads.add(num_classes, like=self._like())
        self._begin(k)

    def task_parameter_groups(self, k: int) -> dict[str, list[nn.Parameter]]:
        groups = self._groups(k)
        return {
            "factors": list(groups.get("factors", [])) + list(self.heads.heads[k].parameters()),
            "routers": list(groups.get("routers", [])),
        }

    def head_parameters(self, k: int) -> int:
        return sum(p.numel() for p in self.heads.heads[k].parameters())

    def _state_tensors(self, k: int) -> dict[str, Tensor]:
        if not 0 <= k < self.num_tasks:
            raise IndexError(f"task {k} has not begun ({self.num_tasks} tasks so far)")
        tensors = {f"shared.{n}": t for n, t in self._shared().items()}
        tensors.update({f"task.{n}": t for n, t in self._own(k).items()})
        tensors.update({f"head.{n}": p for n, p in self.heads.heads[k].named_parameters()})
        return tensors

    def task_state(self, k: int) -> dict[str, Tensor]:
        """Task k's own tensors and head, and the shared tensors as they are at task k's end."""
        return {n: t.detach().clone() for n, t in self._state_tensors(k).items()}

    @torch.no_grad()
    def load_task_state(self, k: int, state: dict[str, Tensor]) -> None:
        live = self._state_tensors(k)
        load_state_tensors(k, live, state)

    def training_loss(self, batch: dict, task: int, loss_cfg, record_rows: bool = False) -> MethodLoss:
        """CE / BCE of head k on task k's columns plus the method's weighted auxiliary losses (``loss_cfg`` is
        DeLo's and unused); parts are logged unweighted."""
        feature, aux = self._features(batch, train_task=task, task=None)
        logits = self.heads.task_logits(feature, task, seen=False)  # (B, C_k)
        cls = classification_loss(logits, batch["labels"], self.head_span(task), self.multilabel)
        total = cls + sum((w * v for w, v in aux.values()), torch.zeros((), device=cls.device))
        return MethodLoss(
            total=total, parts={"cls": cls.detach(), **{n: v.detach() for n, (_, v) in aux.items()}}
        )

    @torch.no_grad()
    def predict(self, batch: dict, oracle: bool = False) -> Prediction:
        task = batch["task"].to(self.device).long() if oracle else None
        feature, _ = self._features(batch, train_task=None, task=task)
        return self.heads.predict(feature, task)

    # -- shared helpers -------------------------------------------------------------------------------------

    @torch.no_grad()
    def frozen_hidden(self, batch: dict) -> Tensor:
        """(B, L0, d) the frozen ViLT's final (LayerNorm-ed) hidden states without prompts: the query pass."""
        out, _ = self.hooks.run(batch)
        return out.last_hidden_state

    @staticmethod
    def parameter(*shape: int, like: Tensor) -> nn.Parameter:
        return nn.Parameter(torch.empty(*shape, device=like.device, dtype=like.dtype))


def missing_codes(batch: dict, device: torch.device) -> Tensor:
    """(B,) long: 0 complete, 1 text missing, 2 image missing."""
    return batch["missing"].to(device).long()
