"""``PromptMethod``: what the prompt comparators share on top of :class:`delo.methods.base.ContinualMethod`.

- Heads: per-task linear heads (:class:`TaskHeads`, frozen once the next task begins) or, for MAP / MSP by
  default, MAP's one MLP classifier over all classes (:class:`SharedMLPHead`, every row stays trainable).
  Training logits (the method section's ``head_logits``): ``own`` task k's columns only (the L2P / DualPrompt
  ports' train_mask, RebQ's FREEZE_LOGITS) or ``seen`` every class seen so far (MAP's code). Prediction is
  task-agnostic over every seen column (``predict(task=None)``) or, task-aware, the true task's columns.
- ViLT's pooler: frozen, or (``train_pooler``, MAP's code) a shared tensor of the method, trained in every task
  and carried in task states.
- Task states: a method names its **shared** tensors (trained in every task: their value at task k's end goes into
  every ``task_state(k)``) and task k's **own** tensors (trained in task k only); ``load_task_state`` replays both.
- The frozen, prompt-free query pass (L2P, DualPrompt, RebQ): ViLT's final hidden states without prompts.

A method implements ``add_task(k)``, ``adapter_groups(k)`` (its own trainable tensors for task k's optimiser,
head excluded), ``_shared()`` / ``_own(k)`` (tensors by name) and ``_features(batch, train_task, task)`` -> the (B, d)
feature the heads read plus its auxiliary losses.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.base import ContinualMethod, MethodLoss, Prediction
from delo.methods.heads import Heads, SharedMLPHead, TaskHeads, classification_loss
from delo.methods.prompts.hooks import PromptHooks

#: auxiliary loss name -> (weight, unweighted value)
AuxLosses = dict[str, tuple[float, Tensor]]


class PromptMethod(ContinualMethod):
    frozen_after_task = (
        False  # shared prompts (or, for RebQ, the weighted sum over all components) keep changing
    )

    def __init__(
        self,
        vilt: nn.Module,
        cfg: ModelConfig,
        multilabel: bool,
        prefix: bool,
        head_logits: str,
        heads: Heads | None = None,
        train_pooler: bool = False,
    ) -> None:
        """``head_logits``: ``own`` or ``seen`` training logits; ``heads``: the classifier (default per-task
        linear heads); ``train_pooler``: ViLT's pooler becomes a shared trainable tensor of the method."""
        super().__init__(vilt, multilabel, heads)
        if head_logits not in ("own", "seen"):
            raise ValueError(f"unknown head_logits {head_logits!r}; expected 'own' or 'seen'")
        self.cfg = cfg
        self.head_logits = head_logits
        self.train_pooler = train_pooler
        if train_pooler:
            self.vilt.pooler.requires_grad_(True)
        self.hooks = PromptHooks(self.vilt, prefix)

    # -- what a method implements ---------------------------------------------------------------------------

    def _shared(self) -> dict[str, Tensor]:
        return {}

    def _own(self, k: int) -> dict[str, Tensor]:
        return {}

    @abstractmethod
    def _features(self, batch: dict, train_task: int | None, task: Tensor | None) -> tuple[Tensor, AuxLosses]:
        """(B, d) feature for the heads and the auxiliary losses; ``train_task`` during training, ``task`` (B,)
        the true task in the task-aware read-out (None: task-agnostic)."""

    # -- the contract ---------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.vilt.pooler.dense.weight.device

    def _like(self) -> Tensor:
        return self.vilt.pooler.dense.weight

    def pooler_parameters(self) -> list[nn.Parameter]:
        """ViLT's pooler when the method trains it (``train_pooler``), else nothing."""
        return list(self.vilt.pooler.parameters()) if self.train_pooler else []

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        """The shared tensors as they are now (``shared.<name>``; ``shared.pooler.*`` when the pooler trains) and
        task k's own (``task.<name>``)."""
        tensors = {f"shared.{n}": t for n, t in self._shared().items()}
        if self.train_pooler:
            tensors.update({f"shared.pooler.{n}": p for n, p in self.vilt.pooler.named_parameters()})
        tensors.update({f"task.{n}": t for n, t in self._own(k).items()})
        return tensors

    def training_loss(self, batch: dict, task: int) -> MethodLoss:
        """CE / BCE on task k's columns (``own``) or on every class seen so far (``seen``) plus the method's
        weighted auxiliary losses; parts are logged unweighted."""
        feature, aux = self._features(batch, train_task=task, task=None)
        seen = self.head_logits == "seen"
        logits = self.heads.task_logits(feature, task, seen)  # (B, C_k) or (B, C_seen)
        span = slice(0, self.head_span(task).stop) if seen else self.head_span(task)
        cls = classification_loss(logits, batch["labels"], span, self.multilabel)
        total = cls + sum((w * v for w, v in aux.values()), torch.zeros((), device=cls.device))
        return MethodLoss(
            total=total, parts={"cls": cls.detach(), **{n: v.detach() for n, (_, v) in aux.items()}}
        )

    @torch.no_grad()
    def predict(self, batch: dict, task_aware: bool = False) -> Prediction:
        task = batch["task"].to(self.device).long() if task_aware else None
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


def protocol_heads(head: str, hidden: int) -> SharedMLPHead | TaskHeads:
    """MAP / MSP's ``head`` key: MAP's one MLP classifier (``mlp``) or per-task linear heads."""
    if head == "mlp":
        return SharedMLPHead(hidden)
    if head == "linear":
        return TaskHeads(hidden)
    raise ValueError(f"unknown head {head!r}; expected 'mlp' or 'linear'")


def missing_codes(batch: dict, device: torch.device) -> Tensor:
    """(B,) long: 0 complete, 1 text missing, 2 image missing."""
    return batch["missing"].to(device).long()
