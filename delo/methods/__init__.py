"""Continual methods on the frozen ViLT: DeLo and the comparators (docs/methods.md).

``build_method(vilt, cfg, multilabel)`` instantiates ``cfg.method``. The registry names each method's class by
its import path, so importing this package costs nothing and ``delo.model`` (DeLo) can import
:mod:`delo.methods.base` without a cycle.
"""

from __future__ import annotations

from importlib import import_module

from delo.config import ModelConfig

#: model.method -> "module:Class"; each class takes (vilt, model_cfg, multilabel). Keep in step with
#: ``delo.config.METHODS`` (a unit test checks).
REGISTRY: dict[str, str] = {
    "delo": "delo.methods.delo.model:DeLoModel",
    "rank1_pool": "delo.methods.shared_experts.rank1_pool:RankOnePool",
    "moe_lora": "delo.methods.shared_experts.moe_lora:MoELoRA",
    "pass_moe": "delo.methods.shared_experts.moe_lora:PASsMoE",
    "mora": "delo.methods.mora.model:MoRAModel",
    "map": "delo.methods.prompts.map:MAP",
    "msp": "delo.methods.prompts.msp:MSP",
    "l2p": "delo.methods.prompts.l2p:L2P",
    "dualprompt": "delo.methods.prompts.dualprompt:DualPrompt",
    "rebq": "delo.methods.prompts.rebq:RebQ",
}


def method_class(name: str) -> type:
    module, cls = REGISTRY[name].split(":")
    return getattr(import_module(module), cls)


def build_method(vilt, cfg: ModelConfig, multilabel: bool):
    """A fresh model of ``cfg.method`` around the frozen ``vilt`` (no task begun)."""
    return method_class(cfg.method)(vilt, cfg, multilabel)


__all__ = ["REGISTRY", "build_method", "method_class"]
