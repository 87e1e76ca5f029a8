"""``KeyedMethod``: a method whose task k serves the samples DeLo's Task-Key Memory routes to task k, with one
linear head per task trained by cross-entropy (MoRA, the ``frozen`` floor). The key routing, the forward, the
training loss, both read-outs and ``infer_task`` are written here once; a subclass adds its own per-task tensors
(``add_task`` calls ``super().add_task`` for the key) and names them in ``adapter_groups`` / ``state_tensors``.

Forward modes: ``train`` (every sample on task k; the pass's key query moves key k), ``agnostic`` (each sample's
task from the Task-Key Memory at the key site, or first through the adapter-free pass when ``model.tkm_layer >
0``), ``task_aware`` (each sample's true task).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.base import ContinualMethod, MethodLoss, Prediction
from delo.methods.heads import classification_loss
from delo.vilt.context import ContextSlot, RoutingContext, use_context
from delo.vilt.key_site import KeySite
from delo.vilt.task_keys import TaskKeyMemory

MODES = ("train", "agnostic", "task_aware")


class KeyedMethod(ContinualMethod):
    frozen_after_task = True
    """Task k's tensors, head and key never change once task k+1 begins."""

    trains_backbone_path: bool = True
    """False when nothing below the heads trains (the forward then runs without a graph)."""

    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool) -> None:
        super().__init__(vilt, multilabel)
        self.cfg = cfg
        self._slot = ContextSlot()
        self.tkm = TaskKeyMemory(self.hidden, cfg.tkm_keys)
        self._key_site = KeySite(vilt, self._slot, self.tkm, cfg.tkm_layer)

    def add_task(self, k: int) -> None:
        """Task k's key (a subclass adds its own tensors, then calls this)."""
        self.tkm.add_task()

    def key_tensors(self, k: int) -> dict[str, Tensor]:
        """Task k's key as it travels in the task state."""
        return {"task_key": self.tkm.keys[k]}

    def forward(self, batch: dict, mode: str, task: int | None = None) -> tuple[Tensor, RoutingContext]:
        """(pooled (B, d), the pass's context: each sample's ``task`` (B,) and the ``key_query``)."""
        if self.num_tasks == 0:
            raise RuntimeError("no task has begun: call begin_task(0, ...) first")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if mode == "train":
            task = self.num_tasks - 1 if task is None else task
        # the guided query only feeds the shared key form (u = mean of the guided queries), as in DeLo
        ctx = self._key_site.context(batch, mode)
        self._key_site.assign_tasks(ctx, batch, task, self.num_tasks, lambda: self.run_vilt(batch))
        grad = contextlib.nullcontext() if self.trains_backbone_path else torch.no_grad()
        with grad, use_context(self._slot, ctx):  # at tkm_layer 0 the key site sets key_query (and the task)
            pooled = self.run_vilt(batch).pooler_output
        return pooled, ctx

    def training_loss(self, batch: dict, task: int) -> MethodLoss:
        """CE / BCE of head ``task`` on its columns; the pass's key query moves key ``task`` (EMA, ``model.beta``)."""
        pooled, ctx = self.forward(batch, "train", task)
        self.tkm.update(task, ctx.key_query, ctx.missing, self.cfg.beta)
        logits = self.heads.task_logits(pooled, task, seen=False)  # (B, C_k)
        cls = classification_loss(logits, batch["labels"], self.head_span(task), self.multilabel)
        return MethodLoss(total=cls, parts={"cls": cls})

    @torch.no_grad()
    def predict(self, batch: dict, task_aware: bool = False) -> Prediction:
        pooled, ctx = self.forward(batch, "task_aware" if task_aware else "agnostic")
        return self.heads.predict(pooled, ctx.task)

    @torch.no_grad()
    def infer_task(self, batch: dict) -> Tensor:
        """(B,) the task the Task-Key Memory assigns each sample, from the adapter-free pass to the key site (the
        same query an agnostic forward routes with)."""
        return self._key_site.infer_task(batch, lambda: self.run_vilt(batch))


__all__ = ["KeyedMethod"]
