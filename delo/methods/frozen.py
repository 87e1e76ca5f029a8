"""``frozen``: the floor of every comparison (docs/methods.md#frozen). The frozen backbone with DeLo's per-task
heads and read-outs and no adapter, so a table row of DeLo (or any method) minus this one is what its adapters add.

Each task trains its own linear head on ViLT's frozen pooled output (cross-entropy over the task's classes, as
DeLo trains its heads) and gets a Task-Key Memory key (``model.tkm_keys``, ``model.tkm_layer``, ``model.beta``,
DeLo's keys). DeLo's key query is read adapter-free at the key site, so this floor infers each test sample's task
exactly as DeLo would from the same training batches: task-agnostic and task-aware, the difference to DeLo is the
adapters alone. Task k's head and key never change after task k.
"""

from __future__ import annotations

from torch import Tensor

from delo.methods.base import ParameterGroups
from delo.methods.keyed import KeyedMethod


class FrozenBackbone(KeyedMethod):
    trains_backbone_path = False  # nothing below the heads trains

    def adapter_groups(self, k: int) -> ParameterGroups:
        return ParameterGroups(main=[])  # the head alone trains

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        return self.key_tensors(k)
