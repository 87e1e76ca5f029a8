"""DeLo model: frozen ViLT, routed factor pools, per-task heads, Task-Key Memory (method.md §1-§7)."""

from delo.model.context import RoutingStats
from delo.model.delo import DeLoModel, ModelOutput, Prediction
from delo.model.inject import inject
from delo.model.layer import DeLoLinear
from delo.model.task_keys import TaskKeyMemory

__all__ = ["DeLoLinear", "DeLoModel", "ModelOutput", "Prediction", "RoutingStats", "TaskKeyMemory", "inject"]
