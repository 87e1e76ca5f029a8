"""One declaration per continual method (docs/methods.md): everything else about a method's name derives from here.

``model.method``'s allowed values (the config's ``Method`` literal), the class ``build_method`` instantiates, the
``model.<section>`` keys the schema carries, the name a report prints, Table 2's figures and the docs table are all
read off :data:`METHODS`. This module imports nothing heavy: the config schema reads it (method names, config
sections by import path), so it must load without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class MethodEntry:
    name: str
    """The ``model.method`` value."""
    target: str
    """``"module:Class"`` of the model (a ``ContinualMethod``), imported on use."""
    display: str
    """The method's name in reports: its paper's name (Table 2's row where it has one)."""
    summary: str
    """What it is, in one line (the docs table's second column)."""
    partition: str
    """What is per task and what is shared (the docs table)."""
    inference: str
    """How a test sample's task is found without its label (the docs table)."""
    section: str | None = None
    """``"module:Class"`` of its ``model.<name>.*`` keys (a light pydantic module beside its code), or None."""
    paper: tuple[float, float] | None = None
    """Table 2 of the DeLo paper (AP, FG): UPMC-Food101-CMML, ViLT-B/32, eta = 70 % both; None when absent."""
    floor: bool = False
    """The floor of every comparison (no adapter): reports pair every row against it, so a table shows what each
    method's adaptation adds."""

    def model_class(self) -> type:
        module, cls = self.target.split(":")
        return getattr(import_module(module), cls)

    def section_class(self) -> type | None:
        if self.section is None:
            return None
        module, cls = self.section.split(":")
        return getattr(import_module(module), cls)


_PROMPT_INFERENCE = "every seen head"
METHODS: dict[str, MethodEntry] = {
    e.name: e
    for e in (
        MethodEntry(
            "delo",
            "delo.methods.delo.model:DeLoModel",
            "DeLo",
            "DeLo (docs/method.md)",
            "per-task pools",
            "Task-Key Memory",
            paper=(67.42, 9.41),
        ),
        MethodEntry(
            "frozen",
            "delo.methods.frozen:FrozenBackbone",
            "Frozen ViLT (floor)",
            "the frozen backbone with DeLo's per-task heads and Task-Key Memory, no adapter: the floor of every table",
            "per-task head and key",
            "Task-Key Memory",
            floor=True,
        ),
        MethodEntry(
            "rank1_pool",
            "delo.methods.shared_experts.rank1_pool:RankOnePool",
            "Rank-1 Expert Pool",
            "one LoRA per linear as E rank-one experts, top-k per sample from [CLS], AGO loss (arXiv 2601.22828)",
            "none: experts shared by every task",
            "per-task heads, class-incremental over seen classes",
            section="delo.methods.shared_experts.config:RankOnePoolConfig",
        ),
        MethodEntry(
            "moe_lora",
            "delo.methods.shared_experts.moe_lora:MoELoRA",
            "MoE-LoRA",
            "plain MoE-LoRA: E rank-r LoRA experts, token-level softmax router",
            "none: experts shared by every task",
            "per-task heads, class-incremental over seen classes",
            section="delo.methods.shared_experts.config:MoELoRAConfig",
        ),
        MethodEntry(
            "pass_moe",
            "delo.methods.shared_experts.moe_lora:PASsMoE",
            "PASs-MoE",
            "`moe_lora` + PAS-guided reweighting + PAS-aware rank stabilisation (arXiv 2601.13020)",
            "none: experts shared by every task",
            "per-task heads, class-incremental over seen classes",
            section="delo.methods.shared_experts.config:PASsMoEConfig",
        ),
        MethodEntry(
            "mora",
            "delo.methods.mora.model:MoRAModel",
            "MoRA",
            "MoRA (Zhao et al., ICLR 2026): modality-specific + Gram-coupled modality-common low-rank updates",
            "one MoRA per task",
            "Task-Key Memory",
            section="delo.methods.mora.config:MoRAConfig",
        ),
        MethodEntry(
            "map",
            "delo.methods.prompts.map:MAP",
            "MAP",
            "missing-aware prompts (Lee et al., CVPR 2023), no anti-forgetting",
            "shared prompts, one MLP classifier over all classes (default; per-task heads with head=linear)",
            _PROMPT_INFERENCE + " (prompt by missing type)",
            section="delo.methods.prompts.config:MapConfig",
            paper=(20.00, 75.95),
        ),
        MethodEntry(
            "msp",
            "delo.methods.prompts.msp:MSP",
            "MSP",
            "modality-specific prompts (Jang et al., ICASSP 2024), no anti-forgetting",
            "shared prompts, one MLP classifier over all classes (default; per-task heads with head=linear)",
            _PROMPT_INFERENCE + " (prompts by present modalities)",
            section="delo.methods.prompts.config:MspConfig",
            paper=(19.76, 76.54),
        ),
        MethodEntry(
            "l2p",
            "delo.methods.prompts.l2p:L2P",
            "L2P",
            "prompt pool with key-query matching (Wang et al., CVPR 2022)",
            "shared pool and keys, per-task heads",
            "top-N keys, " + _PROMPT_INFERENCE,
            section="delo.methods.prompts.config:L2PConfig",
            paper=(24.62, 5.66),
        ),
        MethodEntry(
            "dualprompt",
            "delo.methods.prompts.dualprompt:DualPrompt",
            "DualPrompt",
            "G-prompt + per-task E-prompts (Wang et al., ECCV 2022)",
            "shared G-prompt, per-task E-prompt, key, head",
            "E-prompt by key match, " + _PROMPT_INFERENCE,
            section="delo.methods.prompts.config:DualPromptConfig",
            paper=(40.69, 7.26),
        ),
        MethodEntry(
            "rebq",
            "delo.methods.prompts.rebq:RebQ",
            "RebQ",
            "reconstruct-before-query decomposed prompts (Zhao et al., 2024)",
            "per-task pool components and head",
            "weighted sum over all components, " + _PROMPT_INFERENCE,
            section="delo.methods.prompts.config:RebQConfig",
            paper=(59.92, 8.56),
        ),
    )
}
"""Every method, in the order reports and docs list them."""

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


def entry(name: str) -> MethodEntry:
    """The entry of ``model.method`` ``name`` (KeyError naming the allowed values)."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown model.method {name!r}; allowed: {', '.join(METHODS)}") from None


def docs_table() -> str:
    """The methods table of docs/methods.md (a test checks the file holds exactly this)."""
    rows = ["| method | what it is | task partition | task-agnostic inference |", "|---|---|---|---|"]
    rows += [f"| `{e.name}` | {e.summary} | {e.partition} | {e.inference} |" for e in METHODS.values()]
    return "\n".join(rows)


__all__ = ["METHODS", "METHOD_NAMES", "MethodEntry", "docs_table", "entry"]
