"""MAP: missing-aware prompts (Lee et al., CVPR 2023), run continually with no anti-forgetting mechanism.

One prompt set per missing case (0 complete, 1 text missing, 2 image missing), each (layers, length, d); a
sample gets its case's prompts at every prompted layer: input tokens kept to the end (``position=input``, MAP's
default) or prefix keys/values (``position=attention``, first half keys, second half values). The pooler reads the
text [CLS], as in MAP's code. Shared across tasks: the prompts (trained in every task). The classifier protocol
is MAP's code's by default (``head=mlp``, ``head_logits=seen``, ``train_pooler``): ViLT's pooler trains, and one
MLP classifier over all classes (:class:`~delo.methods.heads.SharedMLPHead`) is trained with cross-entropy over
every class seen so far, old rows included; ``head=linear``, ``head_logits=own``, ``train_pooler=false`` is the
uniform protocol (per-task heads, own-task CE, frozen pooler).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from delo.config import ModelConfig
from delo.methods.base import ParameterGroups
from delo.methods.prompts.base import AuxLosses, PromptMethod, missing_codes, protocol_heads
from delo.methods.prompts.hooks import Prompts, paper_layers

MISSING_CASES = 3  # complete, text missing, image missing (delo.data.records codes 0, 1, 2)


def map_init(prompts: Tensor, attention: bool) -> None:
    """MAP's code: zeros with one token of ones, a different token per case (complete 0, image missing 1, text
    missing 2; the same offset in the value half under prefix tuning). prompts: (3, layers, length, d)."""
    length = prompts.shape[2]
    prompts.zero_()
    for case, row in ((0, 0), (2, 1), (1, 2)):  # our codes: 0 complete, 2 image missing, 1 text missing
        prompts[case, :, row % length] = 1.0
        if attention:
            prompts[case, :, (length // 2 + row) % length] = 1.0


class MAP(PromptMethod):
    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool) -> None:
        self.mcfg = cfg.map
        if self.mcfg.position == "attention" and self.mcfg.length < 2:
            raise ValueError("model.map.length must be >= 2 with position=attention (half keys, half values)")
        super().__init__(
            vilt,
            cfg,
            multilabel,
            prefix=cfg.map.position == "attention",
            head_logits=self.mcfg.head_logits,
            heads=protocol_heads(self.mcfg.head, vilt.config.hidden_size),
            train_pooler=self.mcfg.train_pooler,
        )
        self.layers = paper_layers(self.mcfg.layers, range(6), len(self.vilt.encoder.layer))
        self.hooks.check(self.layers, "model.map.layers")
        self.prompts: nn.Parameter | None = None  # (3, layers, length, d), created at task 0

    def add_task(self, k: int) -> None:
        if k == 0:
            m = self.mcfg
            self.prompts = self.parameter(
                MISSING_CASES, len(self.layers), m.length, self.hidden, like=self._like()
            )
            with torch.no_grad():
                map_init(self.prompts, m.position == "attention")

    def adapter_groups(self, k: int) -> ParameterGroups:
        return ParameterGroups(main=[self.prompts, *self.pooler_parameters()])

    def _shared(self) -> dict[str, Tensor]:
        return {"prompts": self.prompts}

    def layer_prompts(self, missing: Tensor) -> Prompts:
        """Each sample's case prompts at every prompted layer; missing (B,) codes."""
        chosen = self.prompts[missing]  # (B, layers, length, d)
        if self.mcfg.position == "input":
            return Prompts(tokens={layer: chosen[:, j] for j, layer in enumerate(self.layers)})
        half = self.mcfg.length // 2
        return Prompts(
            prefix={layer: (chosen[:, j, :half], chosen[:, j, half:]) for j, layer in enumerate(self.layers)}
        )

    def _features(self, batch: dict, train_task: int | None, task: Tensor | None) -> tuple[Tensor, AuxLosses]:
        out, _ = self.hooks.run(batch, self.layer_prompts(missing_codes(batch, self.device)))
        return out.pooler_output, {}  # (B, d): ViLT's pooler on the text [CLS]
