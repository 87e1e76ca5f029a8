"""MSP: modality-specific prompts (Jang et al., ICASSP 2024), run continually with no anti-forgetting mechanism.

One prompt per modality (image, text), each (layers, length, d), instead of MAP's one per missing case. A sample
attends to the prompts of the modalities it has (complete: both; text missing: the image prompt; image missing:
the text prompt): every sample carries both prompts' tokens, and the absent modality's are masked out of its
attention. Input-level prompts at each prompted layer, kept to the end (MAP's input prompting, which MSP builds
on). An orthogonality loss keeps the two prompts apart: per prompted layer, the mean squared cosine between every
image-prompt token and every text-prompt token. Shared across tasks: both prompts. The classifier protocol is
MAP's code's, as MAP's here (``head``, ``head_logits``, ``train_pooler``; :mod:`delo.methods.prompts.map`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from delo.config import ModelConfig
from delo.methods.base import ParameterGroups
from delo.methods.prompts.base import AuxLosses, PromptMethod, missing_codes, protocol_heads
from delo.methods.prompts.hooks import Prompts, paper_layers
from delo.vilt.task_keys import present_modalities

PROMPT_STD = 0.02  # ViT-style prompt init; MSP does not say (an all-zero MAP init would have no orthogonality gradient)


def orthogonality_loss(prompts: Tensor) -> Tensor:
    """prompts (2 [image, text], layers, length, d) -> mean over layers and token pairs of cos(p_img, p_txt)^2."""
    unit = F.normalize(prompts, dim=-1)
    cos = torch.einsum("lid,ljd->lij", unit[0], unit[1])  # (layers, length, length)
    return cos.pow(2).mean()


class MSP(PromptMethod):
    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool) -> None:
        self.mcfg = cfg.msp
        super().__init__(
            vilt,
            cfg,
            multilabel,
            prefix=False,
            head_logits=self.mcfg.head_logits,
            heads=protocol_heads(self.mcfg.head, vilt.config.hidden_size),
            train_pooler=self.mcfg.train_pooler,
        )
        self.layers = paper_layers(self.mcfg.layers, range(6), len(self.vilt.encoder.layer))
        self.hooks.check(self.layers, "model.msp.layers")
        self.prompts: nn.Parameter | None = None  # (2 [image, text], layers, length, d), created at task 0

    def add_task(self, k: int) -> None:
        if k == 0:
            m = self.mcfg
            self.prompts = self.parameter(2, len(self.layers), m.length, self.hidden, like=self._like())
            nn.init.normal_(self.prompts, std=PROMPT_STD)

    def adapter_groups(self, k: int) -> ParameterGroups:
        return ParameterGroups(main=[self.prompts, *self.pooler_parameters()])

    def _shared(self) -> dict[str, Tensor]:
        return {"prompts": self.prompts}

    def layer_prompts(self, missing: Tensor) -> Prompts:
        """Both prompts at every prompted layer, the absent modality's hidden; missing (B,) codes."""
        b, length = missing.shape[0], self.mcfg.length
        present = present_modalities(missing)  # (B, 2) [image real, text real]
        visible = present.repeat_interleave(length, dim=1)  # (B, 2 * length): image tokens, then text tokens
        tokens, shown = {}, {}
        for j, layer in enumerate(self.layers):
            both = self.prompts[:, j].reshape(2 * length, self.hidden)  # (2 * length, d)
            tokens[layer] = both.unsqueeze(0).expand(b, -1, -1)  # (B, 2 * length, d)
            shown[layer] = visible
        return Prompts(tokens=tokens, visible=shown)

    def _features(self, batch: dict, train_task: int | None, task: Tensor | None) -> tuple[Tensor, AuxLosses]:
        out, _ = self.hooks.run(batch, self.layer_prompts(missing_codes(batch, self.device)))
        aux = (
            {"ortho": (self.mcfg.ortho_weight, orthogonality_loss(self.prompts))}
            if train_task is not None
            else {}
        )
        return out.pooler_output, aux
