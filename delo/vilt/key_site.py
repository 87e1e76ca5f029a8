"""Where the Task-Key Memory reads its query on ViLT, for every method that picks a task per sample by task keys
(DeLo, MoRA; method.md §6).

:class:`KeySite` hooks the frozen ViLT once: the embeddings hook gives the active :class:`RoutingContext` its token
masks (text first, then image [CLS] and patches in this forward's order), and the hook on encoder layer
``layer``'s ``layernorm_before`` turns that layer's LayerNorm-ed input into the TKM query (raw [q_v, q_t] per
modality, or the shared u, by the memory's form). In an agnostic forward whose task is still unknown the same
hook assigns each sample its task, before the first adapted linear of that layer runs. :meth:`KeySite.query_pass`
is the adapter-free forward up to the site (context mode ``keys``: every wrapped linear acts as its frozen base),
for ``tkm_layer > 0`` and the evaluator's prediction reuse.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from delo.vilt.context import ContextSlot, RoutingContext, use_context
from delo.vilt.task_keys import TaskKeyMemory


class _KeySiteReached(Exception):
    """Ends the adapter-free pass once the TKM query is known."""


class KeySite:
    """The two ViLT hooks that fill a method's routing context, and the adapter-free pass to the key site.

    Not a module: it holds references to the method's backbone, context slot and Task-Key Memory, whose
    parameters and buffers the method owns.
    """

    def __init__(
        self, vilt: nn.Module, slot: ContextSlot, tkm: TaskKeyMemory, layer: int, own_tokens: bool = False
    ) -> None:
        num_layers = len(vilt.encoder.layer)
        if layer >= num_layers:
            raise ValueError(f"model.tkm_layer={layer} but the backbone has {num_layers} layers")
        self.slot, self.tkm, self.layer, self.own_tokens = slot, tkm, layer, own_tokens
        vilt.embeddings.register_forward_hook(self._on_embeddings)
        vilt.encoder.layer[layer].layernorm_before.register_forward_hook(self._on_key_site)

    @torch.no_grad()
    def query_pass(self, ctx: RoutingContext, run: Callable[[], object]) -> Tensor:
        """Run ``run()`` (the method's ViLT forward) under ``ctx`` (mode ``keys``) until the key site; returns
        the TKM query: u (B, d) shared, [q_v, q_t] (B, 2, d) per modality."""
        if ctx.mode != "keys":
            raise ValueError(f"the key pass runs in context mode 'keys', not {ctx.mode!r}")
        ctx.stop_at_key_site = True
        try:
            with use_context(self.slot, ctx):
                run()
        except _KeySiteReached:
            return ctx.key_query
        raise RuntimeError("the forward finished without reaching the Task-Key Memory site")

    def _on_embeddings(self, module: nn.Module, args, output) -> None:
        """ViLT's embeddings return (embeddings, [attention_mask, image mask]) in this forward's patch order."""
        ctx = self.slot.current
        if ctx is not None:
            ctx.set_masks(output[1], own_tokens=self.own_tokens)

    def _on_key_site(self, module: nn.Module, args, output: Tensor) -> None:
        """At the input of encoder layer ``layer`` (LayerNorm-ed), before any adapted linear of that layer."""
        ctx = self.slot.current
        if ctx is None or ctx.mode not in ("train", "agnostic", "keys") or ctx.key_query is not None:
            return
        site = ctx.queries_for(output, None)  # raw [q_v, q_t] and guided [q̂_v, q̂_t], each (B, 2, d)
        ctx.key_query = self.tkm.query(site.raw, site.guided).detach()
        if ctx.stop_at_key_site:
            raise _KeySiteReached
        if ctx.task is None:
            ctx.set_task(self.tkm.infer(ctx.key_query, ctx.missing), None, len(self.tkm))
