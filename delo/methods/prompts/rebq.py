"""RebQ: Reconstruct before Query (Zhao et al., 2024), the CMML protocol's own method, on the frozen ViLT.

Three decomposed prompt pools (CODA-Prompt style, :class:`DecomposedPool`): **memory**, **image** and **text**.
Each task adds C components per pool and prompted layer, a prompt P (L, d), a key K (d,) and an attention vector
A (d,); earlier tasks' components are frozen. A query q gives the weights alpha_c = cos(q * A_c, K_c) over every
component begun so far and the prompt sum_c alpha_c P_c (no top-N, no task choice: inference is task-agnostic by
construction).

One training step (RebQ's code, read, not copied):

1. the frozen, prompt-free pass gives each sample's text query (text [CLS] output) and image query (image [CLS]
   output, index text_len);
2. complete samples are duplicated twice with one modality dropped (text -> [CLS][SEP], image -> the dummy
   image): the reconstruction copies;
3. the **memory pass** on originals and copies: memory prompts from the queries of the modalities a sample has
   (complete: the sum of the text- and image-queried prompts) enter as input tokens after the text [CLS] at layers
   0..n-1 (each layer's replacing the previous ones); the reconstruction loss is the MSE between a copy's output at
   its dropped modality's [CLS] and the original complete sample's (detached);
4. a sample missing a modality takes its memory-pass output at that modality's [CLS] as the missing query: the
   reconstructed query replaces the dummy input's;
5. the **prompt pass** on the originals: text prompts from the text query and image prompts from the image query,
   as prefixes (L/2 keys, L/2 values each) at layers 0..n-1; the heads read the final text [CLS] hidden state
   (RebQ's classifier input, no pooler).

Loss: CE / BCE + ``rec_weight`` * reconstruction. Evaluation runs steps 1, 3 (originals only), 4, 5. Per task:
the pools' new components and the head, frozen afterwards; nothing is shared, but a sample's prompts sum over
every component, so later tasks still change earlier tasks' predictions (``frozen_after_task`` stays False).

``mode``: ``paper`` initialises each task's components (Gram-Schmidt, as above); ``release`` (the released code
with its defaults: one 128-component pool initialised at the start for task 0's slice, no re-initialisation)
initialises task 0's only: every later task's components are zero, so their weight alpha = cos(q * 0, 0) is 0
and so is their gradient; they stay zero, and from task 1 on the prompts are task 0's (only the heads learn).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from delo.config import ModelConfig
from delo.data.records import IMAGE_MISSING, TEXT_MISSING
from delo.methods.base import ParameterGroups
from delo.methods.prompts.base import AuxLosses, PromptMethod, missing_codes
from delo.methods.prompts.hooks import Prompts, paper_layers


def orthogonal_block(previous: Tensor, new: int, generator_like: Tensor) -> Tensor:
    """``new`` unit rows orthogonal to the rows of ``previous`` (n, D) and to each other (Gram-Schmidt, as RebQ /
    CODA-Prompt initialise each task's components). When the D-dimensional space is already full (only on test
    backbones, e.g. d = 32 < 12 components x tasks) the remaining rows stay random unit vectors, with a warning."""
    basis = [row / row.norm() for row in previous.double()]
    rows, full = [], False
    for _ in range(new):
        v = torch.randn(previous.shape[1], dtype=torch.float64, device=previous.device)
        for u in basis:
            v = v - (v @ u) * u
        if v.norm() < 1e-6 or len(basis) >= previous.shape[1]:
            full = True
            v = torch.randn(previous.shape[1], dtype=torch.float64, device=previous.device)
        else:
            basis.append(v / v.norm())
        rows.append(v / v.norm())
    if full:
        warnings.warn(
            f"RebQ pool: {len(basis)} components fill all {previous.shape[1]} dimensions; the rest start random, "
            "not orthogonal",
            stacklevel=3,
        )
    return torch.stack(rows).to(generator_like.dtype)


class DecomposedPool(nn.Module):
    """Per prompted layer (index into the method's layer list) and task: prompts (layers, C, L, d), keys and attention vectors (layers, C, d)."""

    def __init__(self, layers: int, length: int, dim: int) -> None:
        super().__init__()
        self.layers, self.length, self.dim = layers, length, dim
        self.prompts = nn.ParameterList()
        self.keys = nn.ParameterList()
        self.attention = nn.ParameterList()

    def add_task(self, components: int, like: Tensor, zero: bool = False) -> None:
        """Freeze the earlier tasks' components; add C new ones, orthogonal to the earlier ones per layer, or
        (``zero``, RebQ's release after task 0) all zero."""
        for params in (self.prompts, self.keys, self.attention):
            for p in params:
                p.requires_grad_(False)
        if zero:
            self.prompts.append(nn.Parameter(like.new_zeros(self.layers, components, self.length, self.dim)))
            self.keys.append(nn.Parameter(like.new_zeros(self.layers, components, self.dim)))
            self.attention.append(nn.Parameter(like.new_zeros(self.layers, components, self.dim)))
            return
        with torch.no_grad():
            for params, width in (
                (self.prompts, self.length * self.dim),
                (self.keys, self.dim),
                (self.attention, self.dim),
            ):
                block = []
                for layer in range(self.layers):
                    earlier = [p[layer].reshape(-1, width) for p in params]  # each (C, width)
                    previous = torch.cat(earlier) if earlier else like.new_zeros(0, width)
                    block.append(orthogonal_block(previous.to(like.device), components, like))
                shape = (self.layers, components, self.length, self.dim) if params is self.prompts else None
                tensor = torch.stack(block)  # (layers, C, width)
                params.append(nn.Parameter(tensor.reshape(shape) if shape else tensor))

    def task_tensors(self, k: int) -> dict[str, Tensor]:
        return {"prompts": self.prompts[k], "keys": self.keys[k], "attention": self.attention[k]}

    def weights(self, query: Tensor, layer: int) -> Tensor:
        """(B, C_total) alpha = cos(query * A, K) over every component begun so far; query (B, d)."""
        keys = torch.cat([k[layer] for k in self.keys])  # (C_total, d)
        attn = torch.cat([a[layer] for a in self.attention])  # (C_total, d)
        attended = F.normalize(query[:, None, :] * attn[None], dim=-1)  # (B, C_total, d)
        return torch.einsum("bcd,cd->bc", attended, F.normalize(keys, dim=-1))

    def forward(self, query: Tensor, layer: int) -> Tensor:
        """(B, L, d) the prompt sum_c alpha_c P_c of one layer."""
        prompts = torch.cat([p[layer] for p in self.prompts])  # (C_total, L, d)
        return torch.einsum("bc,cld->bld", self.weights(query, layer), prompts)


def drop_modality(batch: dict, rows: Tensor, image_size: int) -> dict:
    """Copies of ``batch``'s samples ``rows`` with the text (first half) and the image (second half) dropped as the
    data pipeline drops them: text -> [CLS][SEP] (right-padded), image -> the dummy (all-1 pixels, full mask at the
    backbone's square size, zero-padded to the batch's image size)."""
    ids, mask = batch["input_ids"][rows], batch["attention_mask"][rows]  # (n, L)
    n, length = ids.shape
    first = mask.long().argmax(dim=1)  # (n,) the [CLS]
    last = length - 1 - mask.long().flip(1).argmax(dim=1)  # (n,) the [SEP]
    no_text = torch.zeros_like(ids)  # padding ids are masked out and never read
    no_text[:, 0] = ids.gather(1, first[:, None])[:, 0]
    no_text[:, 1] = ids.gather(1, last[:, None])[:, 0]
    no_text_mask = torch.zeros_like(mask)
    no_text_mask[:, :2] = 1
    pixels, pixel_mask = batch["pixel_values"][rows], batch["pixel_mask"][rows]  # (n, 3, H, W), (n, H, W)
    if pixels.shape[-1] < image_size or pixels.shape[-2] < image_size:
        raise ValueError(
            f"batch images {tuple(pixels.shape[-2:])} smaller than the dummy image ({image_size})"
        )
    dummy = torch.zeros_like(pixels)
    dummy[..., :image_size, :image_size] = 1.0
    dummy_mask = torch.zeros_like(pixel_mask)
    dummy_mask[..., :image_size, :image_size] = 1
    types = batch.get("token_type_ids")
    return {
        "input_ids": torch.cat([no_text, ids]),
        "attention_mask": torch.cat([no_text_mask, mask]),
        "token_type_ids": None if types is None else torch.cat([types[rows], types[rows]]),
        "pixel_values": torch.cat([pixels, dummy]),
        "pixel_mask": torch.cat([pixel_mask, dummy_mask]),
        "missing": torch.cat([torch.full_like(rows, TEXT_MISSING), torch.full_like(rows, IMAGE_MISSING)]),
    }


def _cat(a: dict, b: dict) -> dict:
    keys = ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask", "missing")
    return {k: None if a.get(k) is None else torch.cat([a[k], b[k]]) for k in keys}


class RebQ(PromptMethod):
    def __init__(self, vilt: nn.Module, cfg: ModelConfig, multilabel: bool) -> None:
        self.mcfg = cfg.rebq
        super().__init__(vilt, cfg, multilabel, prefix=True, head_logits=self.mcfg.head_logits)
        self.layers = paper_layers(self.mcfg.layers, range(8), len(self.vilt.encoder.layer))
        self.hooks.check(self.layers, "model.rebq.layers")
        n, length = len(self.layers), self.mcfg.length
        self.memory = DecomposedPool(n, length, self.hidden)
        self.image = DecomposedPool(n, length, self.hidden)
        self.text = DecomposedPool(n, length, self.hidden)
        self.image_size = vilt.config.image_size

    def _pools(self) -> dict[str, DecomposedPool]:
        return {"memory": self.memory, "image": self.image, "text": self.text}

    def add_task(self, k: int) -> None:
        zero = k > 0 and self.mcfg.mode == "release"
        for pool in self._pools().values():
            pool.add_task(self.mcfg.components_per_task, self._like(), zero=zero)

    def adapter_groups(self, k: int) -> ParameterGroups:
        return ParameterGroups(
            main=[p for pool in self._pools().values() for p in pool.task_tensors(k).values()]
        )

    def _own(self, k: int) -> dict[str, Tensor]:
        return {
            f"{name}.{t}": v for name, pool in self._pools().items() for t, v in pool.task_tensors(k).items()
        }

    def memory_prompts(self, q_text: Tensor, q_image: Tensor, missing: Tensor) -> Prompts:
        """Memory tokens per layer from the queries of the modalities each sample has; q_* (B, d)."""
        has_image = (missing != IMAGE_MISSING).to(q_text.dtype)[:, None, None]  # (B, 1, 1)
        has_text = (missing != TEXT_MISSING).to(q_text.dtype)[:, None, None]
        tokens = {
            layer: has_text * self.memory(q_text, j) + has_image * self.memory(q_image, j)
            for j, layer in enumerate(self.layers)
        }  # (B, L, d) each
        return Prompts(tokens=tokens, carry="replace")

    def query_prompts(self, q_text: Tensor, q_image: Tensor) -> Prompts:
        """Text and image prefixes per layer (first L/2 rows keys, last L/2 values)."""
        half = self.mcfg.length // 2
        prefix = {}
        for j, layer in enumerate(self.layers):
            t, v = self.text(q_text, j), self.image(q_image, j)  # (B, L, d) each
            prefix[layer] = (
                torch.cat([t[:, :half], v[:, :half]], 1),
                torch.cat([t[:, half:], v[:, half:]], 1),
            )
        return Prompts(prefix=prefix)

    def reconstruct(self, batch: dict, train: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        """(B, d) text and image queries, the missing one reconstructed, and the reconstruction loss (training
        with at least one complete sample; else None)."""
        missing = missing_codes(batch, self.device)
        b, text_len = missing.shape[0], batch["input_ids"].shape[1]
        complete = (missing == 0).nonzero()[:, 0]  # (n,)
        inputs = {**batch, "missing": missing}
        copies = drop_modality(inputs, complete, self.image_size) if train and complete.numel() else None
        both = _cat(inputs, copies) if copies is not None else inputs
        frozen = self.frozen_hidden(both)  # (B', L0, d)
        q_text, q_image = frozen[:, 0], frozen[:, text_len]  # (B', d) each
        out, n = self.hooks.run(both, self.memory_prompts(q_text, q_image, both["missing"]))
        _, seq = self.hooks.split(out.last_hidden_state, n)  # (B', L0, d) memory tokens removed
        rec = None
        if copies is not None:
            m = complete.numel()
            source = seq[complete]  # (n, L0, d) the complete originals
            lost_text = (seq[b : b + m, 0] - source[:, 0].detach()).pow(2).mean(dim=1)  # (n,)
            lost_image = (seq[b + m :, text_len] - source[:, text_len].detach()).pow(2).mean(dim=1)  # (n,)
            rec = torch.cat([lost_text, lost_image]).mean()
        q_text = torch.where((missing == TEXT_MISSING)[:, None], seq[:b, 0], q_text[:b])  # (B, d)
        q_image = torch.where((missing == IMAGE_MISSING)[:, None], seq[:b, text_len], q_image[:b])  # (B, d)
        return q_text, q_image, rec

    def _features(self, batch: dict, train_task: int | None, task: Tensor | None) -> tuple[Tensor, AuxLosses]:
        q_text, q_image, rec = self.reconstruct(batch, train=train_task is not None)
        out, _ = self.hooks.run(batch, self.query_prompts(q_text, q_image))
        aux: AuxLosses = {} if rec is None else {"rec": (self.mcfg.rec_weight, rec)}
        return out.last_hidden_state[:, 0], aux  # (B, d) RebQ's classifier reads the final text [CLS]
