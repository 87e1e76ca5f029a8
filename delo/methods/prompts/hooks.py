"""Prompt machinery on the frozen ViLT: input prompt tokens and attention prefixes, through hooks, no copy of
ViLT's forward (docs/methods.md "Prompt machinery").

One :class:`PromptHooks` per model registers, once:

- a forward hook on ``vilt.embeddings`` (records the prompt-free sequence length L0 of this forward);
- a forward pre-hook on every ``encoder.layer[i]`` (``ViltLayer``) that inserts the layer's **input prompt tokens**
  right after the text [CLS] (position 0 stays the text [CLS], which ViLT's pooler reads) and widens the
  attention mask to the longer sequence. With ``carry="accumulate"`` (MAP's input prompts) the tokens inserted at
  earlier layers stay; with ``carry="replace"`` (deep prompt tuning, RebQ's memory prompts) the earlier layer's
  prompt outputs are dropped before the new tokens go in. Either way, after the last prompted layer the prompt
  outputs travel on to the final layer, at positions 1..n of ``last_hidden_state``;
- for **prefix tuning** (keys/values prepended inside self-attention: MAP/MSP ``attention``, DualPrompt, RebQ's
  image/text prompts) a pre-hook on ``layer.attention.attention`` (``ViltSelfAttention``) that puts n placeholder
  rows in front of the (LayerNorm-ed) hidden states and widens the mask, the key and value linears wrapped
  (:class:`PrefixLinear`, through :func:`delo.vilt.inject.inject`) so the placeholders' keys and values are the
  prefix itself, and a forward hook that drops the placeholders' rows from the attention output. The attention
  is then exactly softmax(q [p_k; K]^T / sqrt(d_h) + mask) [p_v; V] for the real tokens, which is prefix tuning;
  the placeholders' own query rows are computed and thrown away.

ViLT has no position information after its embeddings, so where in the sequence a prompt sits changes nothing
but which index the pooler reads; keeping the text [CLS] at index 0 is what lets every method read ViLT's pooler.

The encoder passes one attention mask, (B, 1, L0, L0) additive (or None when nothing is padded), to every layer;
the pre-hooks widen it per call to the sequence the layer actually sees: prompt key columns are 0 (every token
attends to the prompts) and prompt query rows copy the text [CLS] row (prompts see what the [CLS] sees).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from delo.vilt.inject import WrappedLinear, inject

Carry = Literal["accumulate", "replace"]

PAPER_DEPTH = 12  # the published prompt layers are for ViLT-B/32's 12 layers


def paper_layers(
    chosen: tuple[int, ...] | None, published: range | tuple[int, ...], num_layers: int
) -> tuple[int, ...]:
    """``chosen`` as given, or (None) the ``published`` layers of a 12-layer ViLT mapped to this backbone's depth:
    layer i -> floor(i * num_layers / 12), duplicates merged (the identity on a 12-layer ViLT)."""
    if chosen is not None:
        return tuple(chosen)
    return tuple(sorted({i * num_layers // PAPER_DEPTH for i in published}))


@dataclass
class Prompts:
    """One forward's prompts, by encoder layer index."""

    tokens: dict[int, Tensor] = field(default_factory=dict)  # layer -> (B, P, d) input tokens
    prefix: dict[int, tuple[Tensor, Tensor]] = field(
        default_factory=dict
    )  # layer -> keys, values, each (B, P', d)
    carry: Carry = "accumulate"
    # layer -> (B, P) bool: which of the layer's input tokens each sample attends to (default: all), for methods
    # whose samples get different numbers of prompts (MSP: one prompt per present modality)
    visible: dict[int, Tensor] = field(default_factory=dict)


@dataclass
class _Pass:
    prompts: Prompts
    base_len: int | None = None  # L0: tokens of the prompt-free sequence (text + image)
    present: int = 0  # prompt tokens in the sequence right now (positions 1..present)
    visible: Tensor | None = None  # (B, present) bool, None when every present prompt token is visible
    pending: tuple[Tensor, Tensor] | None = None  # the current layer's prefix, read by the key/value linears


def _widen(mask: Tensor | None, at: int, n: int, visible: Tensor | None = None, like: Tensor | None = None):
    """Insert n prompt positions at index ``at`` of a (B, 1, Lq, Lk) additive mask: key columns 0 where
    ``visible`` (B, n) (default: all), the dtype's minimum elsewhere; query rows copied from row 0 (the text
    [CLS]'s). A None mask (nothing padded) stays None unless some prompt is hidden; then it is built from
    ``like`` (B, L, d), the hidden states the mask is for."""
    if n == 0 or (mask is None and visible is None):
        return mask
    if mask is None:
        mask = like.new_zeros(like.shape[0], 1, like.shape[1], like.shape[1])
    b, h, lq, lk = mask.shape
    rows = torch.cat([mask[:, :, :at], mask[:, :, :1].expand(b, h, n, lk), mask[:, :, at:]], dim=2)
    columns = rows.new_zeros(b, h, lq + n, n)
    if visible is not None:
        hidden = torch.full_like(columns, torch.finfo(columns.dtype).min)
        columns = torch.where(visible[:, None, None, :], columns, hidden)
    return torch.cat([rows[..., :at], columns, rows[..., at:]], dim=3)  # (B, 1, Lq + n, Lk + n)


def _all(hidden: Tensor, n: int) -> Tensor:
    return torch.ones(hidden.shape[0], n, dtype=torch.bool, device=hidden.device)


class PrefixLinear(WrappedLinear):
    """A frozen key or value linear whose first rows are replaced by the pending prefix (prefix tuning)."""

    def __init__(self, linear: nn.Linear, hooks: PromptHooks, role: int) -> None:
        super().__init__()
        self.base_layer = linear
        self._hooks = [hooks]  # a list, so the hooks object is not registered as a child module
        self.role = role  # 0: keys, 1: values

    def forward(self, x: Tensor) -> Tensor:
        out = self.base_layer(x)  # (B, P' + L, d)
        state = self._hooks[0].state
        if state is None or state.pending is None:
            return out
        prefix = state.pending[self.role].to(out.dtype)  # (B, P', d)
        return torch.cat([prefix, out[:, prefix.shape[1] :]], dim=1)


class PromptHooks:
    """The hooks on one ViltModel; :meth:`run` is one forward with a given :class:`Prompts`."""

    def __init__(self, vilt: nn.Module, prefix: bool) -> None:
        """``prefix``: wrap the key/value linears of every layer for prefix tuning (methods without prefixes
        leave ViLT's linears as they are)."""
        if any(getattr(m, "gradient_checkpointing", False) is True for m in vilt.modules()):
            raise ValueError(
                "gradient checkpointing re-runs ViLT layers outside the prompt hooks; disable it"
            )
        self.vilt = vilt
        self.state: _Pass | None = None
        self.num_layers = len(vilt.encoder.layer)
        vilt.embeddings.register_forward_hook(self._on_embeddings)
        for i, layer in enumerate(vilt.encoder.layer):
            layer.register_forward_pre_hook(self._layer_hook(i))
        if prefix:
            inject(vilt, ["attention.attention.key"], lambda _, linear: PrefixLinear(linear, self, 0))
            inject(vilt, ["attention.attention.value"], lambda _, linear: PrefixLinear(linear, self, 1))
            for i, layer in enumerate(vilt.encoder.layer):
                layer.attention.attention.register_forward_pre_hook(self._attention_pre_hook(i))
                layer.attention.attention.register_forward_hook(self._attention_hook)
        self.prefix = prefix

    def check(self, layers, what: str) -> None:
        """Refuse prompt layers outside the backbone."""
        bad = [i for i in layers if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f"{what}: layers {bad} outside the backbone's 0..{self.num_layers - 1}")

    def run(self, batch: dict, prompts: Prompts | None = None):
        """ViLT on ``batch`` with ``prompts``; returns (ViLT output, n) where n prompt outputs sit at positions
        1..n of ``last_hidden_state`` (0 without input prompts)."""
        prompts = prompts or Prompts()
        if prompts.prefix and not self.prefix:
            raise RuntimeError("prefix prompts need PromptHooks(prefix=True)")
        self.check([*prompts.tokens, *prompts.prefix], "prompts")
        self.state = _Pass(prompts)
        try:
            out = self.vilt(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                token_type_ids=batch.get("token_type_ids"),
                pixel_values=batch["pixel_values"],
                pixel_mask=batch["pixel_mask"],
            )
            return out, self.state.present
        finally:
            self.state = None

    @staticmethod
    def split(hidden: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """(B, 1 + n + L0 - 1, d) -> prompt outputs (B, n, d) and the prompt-free sequence (B, L0, d)."""
        return hidden[:, 1 : 1 + n], torch.cat([hidden[:, :1], hidden[:, 1 + n :]], dim=1)

    # -- hooks ----------------------------------------------------------------------------------------------

    def _on_embeddings(self, module, args, output) -> None:
        if self.state is not None:
            self.state.base_len = output[0].shape[1]  # embeddings return (tokens (B, L0, d), mask (B, L0))

    def _layer_hook(self, i: int):
        def hook(module, args):
            state = self.state
            if state is None:
                return None
            hidden, mask, *rest = args  # (B, L, d), (B, 1, L0, L0) or None
            base = hidden[:, : state.base_len]  # a (B, L0, d) stand-in for building a mask
            state.present = hidden.shape[1] - state.base_len
            tokens = state.prompts.tokens.get(i)
            if tokens is not None:
                if state.prompts.carry == "replace":
                    hidden = torch.cat([hidden[:, :1], hidden[:, 1 + state.present :]], dim=1)
                    state.present, state.visible = 0, None
                new = tokens.to(hidden.dtype)  # (B, P, d)
                hidden = torch.cat([hidden[:, :1], new, hidden[:, 1:]], dim=1)
                vis = state.prompts.visible.get(i)
                if vis is not None or state.visible is not None:
                    old = state.visible if state.visible is not None else _all(hidden, state.present)
                    new_vis = vis.bool() if vis is not None else _all(hidden, new.shape[1])
                    state.visible = torch.cat([new_vis, old], dim=1)  # new tokens sit first, at 1..P
                state.present += new.shape[1]
            return (hidden, _widen(mask, 1, state.present, state.visible, base), *rest)

        return hook

    def _attention_pre_hook(self, i: int):
        def hook(module, args):
            state = self.state
            if state is None or i not in state.prompts.prefix:
                return None
            hidden, mask, *rest = args  # LayerNorm-ed (B, L, d), the layer's mask
            keys, values = state.prompts.prefix[i]  # (B, P', d) each
            state.pending = (keys, values)
            placeholder = hidden.new_zeros(hidden.shape[0], keys.shape[1], hidden.shape[2])
            return (torch.cat([placeholder, hidden], dim=1), _widen(mask, 0, keys.shape[1]), *rest)

        return hook

    def _attention_hook(self, module, args, output):
        state = self.state
        if state is None or state.pending is None:
            return None
        n = state.pending[0].shape[1]
        state.pending = None
        return (output[0][:, n:], *output[1:])  # drop the placeholders' rows: (B, L, d)
