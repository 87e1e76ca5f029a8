"""``frozen``: the floor of every comparison (docs/methods.md#frozen). The frozen backbone with DeLo's per-task
heads and read-outs and no adapter, so a table row of DeLo (or any method) minus this one is what its adapters add.

Each task trains its own linear head on ViLT's frozen pooled output (cross-entropy over the task's classes, as
DeLo trains its heads) and gets a Task-Key Memory key (``model.tkm_keys``, ``model.tkm_layer``, ``model.beta``,
DeLo's keys). DeLo's key query is read adapter-free at the key site, so this floor infers each test sample's task
exactly as DeLo would from the same training batches: task-agnostic and task-aware, the difference to DeLo is the
adapters alone. Task k's head and key never change after task k.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.base import ContinualMethod, MethodLoss, ParameterGroups, Prediction
from delo.methods.heads import classification_loss
from delo.vilt.context import ContextSlot, RoutingContext, use_context
from delo.vilt.key_site import KeySite
from delo.vilt.task_keys import TaskKeyMemory


class FrozenBackbone(ContinualMethod):
    frozen_after_task = True
    """Task k's head and key never change once task k+1 begins."""

    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool) -> None:
        super().__init__(vilt, multilabel)
        self.cfg = cfg
        self._slot = ContextSlot()
        self.tkm = TaskKeyMemory(self.hidden, cfg.tkm_keys)
        self._key_site = KeySite(vilt, self._slot, self.tkm, cfg.tkm_layer)

    def add_task(self, k: int) -> None:
        """Task k's key (its head is the base's)."""
        self.tkm.add_task()

    def adapter_groups(self, k: int) -> ParameterGroups:
        return ParameterGroups(main=[])  # the head alone trains

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        return {"task_key": self.tkm.keys[k]}

    def forward(self, batch: dict, mode: str, task: int | None = None) -> tuple[Tensor, RoutingContext]:
        """(pooled (B, d) without a graph, the pass's context with each sample's ``task``)."""
        if self.num_tasks == 0:
            raise RuntimeError("no task has begun: call begin_task(0, ...) first")
        if mode not in ("train", "agnostic", "task_aware"):
            raise ValueError(f"unknown mode {mode!r}; expected train, agnostic or task_aware")
        if mode == "train":
            task = self.num_tasks - 1 if task is None else task
        ctx = self._key_site.context(batch, mode)
        self._key_site.assign_tasks(ctx, batch, task, self.num_tasks, lambda: self.run_vilt(batch))
        with torch.no_grad(), use_context(self._slot, ctx):  # nothing below the heads trains
            pooled = self.run_vilt(batch).pooler_output
        return pooled, ctx

    def training_loss(self, batch: dict, task: int) -> MethodLoss:
        """CE / BCE of head ``task`` on its columns; the pass's key query moves key ``task``."""
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
        """(B,) the task the Task-Key Memory assigns each sample (the query an agnostic forward routes with)."""
        return self._key_site.infer_task(batch, lambda: self.run_vilt(batch))
