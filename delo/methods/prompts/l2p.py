"""L2P: Learning to Prompt (Wang et al., CVPR 2022) on the frozen ViLT.

A shared pool of M prompts (each L_p tokens) with one learnable key each. The query is the frozen model's text
[CLS] feature from a prompt-free pass (final LayerNorm-ed hidden state at index 0); the N prompts whose keys are
most cosine-similar to it are concatenated (N * L_p tokens) and inserted at the input of the first encoder layer.
The surrogate loss lambda * sum over the selected keys of (1 - cos(query, key)) pulls the chosen keys toward the
queries. The heads read the mean of the prompt tokens' final outputs (``readout=prompt_mean``, L2P's classifier
input) or ViLT's pooler (``readout=cls``). The pool and keys are shared and train in every task (L2P has no
per-task parameters); per task: the head. Inference is task-agnostic by construction: the same key-query
selection, then every seen head. As in the L2P PyTorch port: heads trunc-normal (std 0.02) with zero bias,
own-task logits (``head_logits``), the gradient clipped to norm ``max_grad_norm``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from delo.config import ModelConfig
from delo.methods.base import ParameterGroups
from delo.methods.heads import TaskHeads
from delo.methods.prompts.base import AuxLosses, PromptMethod
from delo.methods.prompts.hooks import Prompts


def select_top(query: Tensor, keys: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """query (B, d), keys (M, d) -> cos (B, M) (differentiable in keys) and the top-n indices (B, n)."""
    cos = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T  # (B, M)
    return cos, cos.detach().topk(n, dim=1).indices


class L2P(PromptMethod):
    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool) -> None:
        self.mcfg = cfg.l2p
        super().__init__(
            vilt,
            cfg,
            multilabel,
            prefix=False,
            head_logits=self.mcfg.head_logits,
            heads=TaskHeads(vilt.config.hidden_size, init="trunc_normal"),
        )
        self.max_grad_norm = self.mcfg.max_grad_norm
        self.pool: nn.Parameter | None = None  # (M, L_p, d)
        self.keys: nn.Parameter | None = None  # (M, d)

    def add_task(self, k: int) -> None:
        if k == 0:
            m = self.mcfg
            self.pool = self.parameter(m.pool_size, m.length, self.hidden, like=self._like())
            self.keys = self.parameter(m.pool_size, self.hidden, like=self._like())
            nn.init.uniform_(self.pool, -1.0, 1.0)  # L2P's code: uniform prompt and key init
            nn.init.uniform_(self.keys, -1.0, 1.0)

    def adapter_groups(self, k: int) -> ParameterGroups:
        return ParameterGroups(main=[self.pool], routing=[self.keys])

    def _shared(self) -> dict[str, Tensor]:
        return {"pool": self.pool, "keys": self.keys}

    def select(self, batch: dict) -> tuple[Tensor, Tensor]:
        """cos (B, M) and the selected prompt indices (B, N) from the prompt-free [CLS] query."""
        query = self.frozen_hidden(batch)[:, 0]  # (B, d)
        return select_top(query, self.keys, self.mcfg.top_n)

    def _features(self, batch: dict, train_task: int | None, task: Tensor | None) -> tuple[Tensor, AuxLosses]:
        cos, idx = self.select(batch)
        b = idx.shape[0]
        tokens = self.pool[idx].reshape(b, -1, self.hidden)  # (B, N * L_p, d)
        out, n = self.hooks.run(batch, Prompts(tokens={0: tokens}))
        if self.mcfg.readout == "prompt_mean":
            prompt_out, _ = self.hooks.split(out.last_hidden_state, n)
            feature = prompt_out.mean(dim=1)  # (B, d)
        else:
            feature = out.pooler_output  # (B, d)
        aux: AuxLosses = {}
        if train_task is not None:
            matched = (1.0 - cos.gather(1, idx)).sum(dim=1).mean()  # sum over the N selected keys, batch mean
            aux["key"] = (self.mcfg.key_weight, matched)
        return feature, aux
