"""DualPrompt (Wang et al., ECCV 2022) on the frozen ViLT.

A G(eneral)-prompt shared by all tasks, prefix-tuned into the shallow layers (``g_layers``), and one
E(xpert)-prompt per task, prefix-tuned into deeper layers (``e_layers``), each with a learnable key. Training task
k uses E-prompt k and pulls key k toward the frozen model's prompt-free text [CLS] query with lambda * (1 -
cos(query, key_k)). At test time each sample's E-prompt is the one whose key best matches its query (the task-aware
read-out uses the true task's). Keys and values get ``length`` rows each, as in the authors' code. Shared: the
G-prompt (trained in every task); per task: E-prompt k, key k and head k, frozen once task k ends.

As the DualPrompt PyTorch port runs it (docs/methods.md): E-prompt length 5; task k's E-prompt starts as a copy
of E-prompt k-1 (``e_init=previous``); the heads read the final LayerNorm-ed text [CLS] hidden state
(``readout=cls``; ``pooler``: ViLT's pooler on it), are trunc-normal (std 0.02) with zero bias and train on their
own task's columns; the gradient is clipped to norm ``max_grad_norm`` (1.0).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from delo.config import ModelConfig
from delo.methods.base import ParameterGroups
from delo.methods.heads import TaskHeads
from delo.methods.prompts.base import AuxLosses, PromptMethod
from delo.methods.prompts.hooks import Prompts, paper_layers


class DualPrompt(PromptMethod):
    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool) -> None:
        self.mcfg = cfg.dualprompt
        super().__init__(
            vilt,
            cfg,
            multilabel,
            prefix=True,
            head_logits=self.mcfg.head_logits,
            heads=TaskHeads(vilt.config.hidden_size, init="trunc_normal"),
        )
        self.max_grad_norm = self.mcfg.max_grad_norm
        depth = len(self.vilt.encoder.layer)
        self.g_layers = paper_layers(self.mcfg.g_layers, (0, 1), depth)
        self.e_layers = paper_layers(self.mcfg.e_layers, (2, 3, 4), depth)
        self.hooks.check(self.g_layers, "model.dualprompt.g_layers")
        self.hooks.check(self.e_layers, "model.dualprompt.e_layers")
        self.g_prompt: nn.Parameter | None = None  # (g_layers, 2 [keys, values], L_g, d)
        self.e_prompts = nn.ParameterList()  # per task: (e_layers, 2, L_e, d)
        self.e_keys = nn.ParameterList()  # per task: (d,)

    def add_task(self, k: int) -> None:
        m, like = self.mcfg, self._like()
        for j in range(k):
            self.e_prompts[j].requires_grad_(False)
            self.e_keys[j].requires_grad_(False)
        if k == 0:
            self.g_prompt = self.parameter(len(self.g_layers), 2, m.g_length, self.hidden, like=like)
            nn.init.uniform_(self.g_prompt, -1.0, 1.0)  # the authors' code: uniform prompt and key init
        e_prompt = self.parameter(len(self.e_layers), 2, m.e_length, self.hidden, like=like)
        key = self.parameter(self.hidden, like=like)
        with torch.no_grad():
            if k > 0 and m.e_init == "previous":  # the port's engine: the new E-prompt from the previous one
                e_prompt.copy_(self.e_prompts[k - 1])
            else:
                nn.init.uniform_(e_prompt, -1.0, 1.0)
        nn.init.uniform_(key, -1.0, 1.0)
        self.e_prompts.append(e_prompt)
        self.e_keys.append(key)

    def adapter_groups(self, k: int) -> ParameterGroups:
        return ParameterGroups(main=[self.g_prompt, self.e_prompts[k]], routing=[self.e_keys[k]])

    def _shared(self) -> dict[str, Tensor]:
        return {"g_prompt": self.g_prompt}

    def _own(self, k: int) -> dict[str, Tensor]:
        return {"e_prompt": self.e_prompts[k], "e_key": self.e_keys[k]}

    def key_scores(self, query: Tensor) -> Tensor:
        """(B, T) cos(query, key_t) over the learned tasks; query (B, d)."""
        keys = torch.stack(list(self.e_keys))  # (T, d)
        return F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T

    def layer_prompts(self, expert: Tensor) -> Prompts:
        """G-prompt for everyone, E-prompt ``expert`` (B,) per sample; a layer in both gets both prefixes."""
        b = expert.shape[0]
        chosen = torch.stack(list(self.e_prompts))[expert]  # (B, e_layers, 2, L_e, d)
        parts: dict[int, list[tuple[Tensor, Tensor]]] = {}
        for j, layer in enumerate(self.g_layers):
            g = self.g_prompt[j].unsqueeze(0).expand(b, -1, -1, -1)  # (B, 2, L_g, d)
            parts.setdefault(layer, []).append((g[:, 0], g[:, 1]))
        for j, layer in enumerate(self.e_layers):
            parts.setdefault(layer, []).append((chosen[:, j, 0], chosen[:, j, 1]))
        prefix = {
            layer: (torch.cat([p[0] for p in ps], dim=1), torch.cat([p[1] for p in ps], dim=1))
            for layer, ps in parts.items()
        }
        return Prompts(prefix=prefix)

    def _features(self, batch: dict, train_task: int | None, task: Tensor | None) -> tuple[Tensor, AuxLosses]:
        query = self.frozen_hidden(batch)[:, 0]  # (B, d) prompt-free text [CLS]
        aux: AuxLosses = {}
        if train_task is not None:
            expert = torch.full((query.shape[0],), train_task, dtype=torch.long, device=query.device)
            aux["key"] = (self.mcfg.key_weight, (1.0 - self.key_scores(query)[:, train_task]).mean())
        elif task is not None:
            expert = task
        else:
            expert = self.key_scores(query).argmax(dim=1)  # (B,)
        out, _ = self.hooks.run(batch, self.layer_prompts(expert))
        if self.mcfg.readout == "cls":
            return out.last_hidden_state[:, 0], aux  # (B, d) final LayerNorm-ed text [CLS]
        return out.pooler_output, aux
