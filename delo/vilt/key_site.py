"""Where the Task-Key Memory reads its query on ViLT, for every method that picks a task per sample by task keys
(DeLo, MoRA; method.md §6).

:class:`KeySite` hooks the frozen ViLT once: the embeddings hook gives the active :class:`RoutingContext` its token
masks (text first, then image [CLS] and patches in this forward's order), and the hook on encoder layer
``layer``'s ``layernorm_before`` turns that layer's LayerNorm-ed input into the TKM query (raw [q_v, q_t] per
modality, or the shared u, by the memory's form). In an agnostic forward whose task is still unknown the same
hook assigns each sample its task, before the first adapted linear of that layer runs. :meth:`KeySite.query_pass`
is the adapter-free forward up to the site (context mode ``keys``: every wrapped linear acts as its frozen base),
for ``tkm_layer > 0`` and the evaluator's prediction reuse. :meth:`KeySite.context` and :meth:`KeySite.assign_tasks`
are the per-forward routing both methods share: a fresh context, and each sample's task by the forward's mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from delo.vilt.context import ContextSlot, RoutingContext, RoutingStats, guide_index, use_context
from delo.vilt.task_keys import TaskKeyMemory


class _KeySiteReached(Exception):
    """Ends the adapter-free pass once the TKM query is known."""


class KeySite:
    """The two ViLT hooks that fill a method's routing context, and the adapter-free pass to the key site.

    Not a module: it holds references to the method's backbone, context slot and Task-Key Memory, whose
    parameters and buffers the method owns.
    """

    def __init__(
        self,
        vilt: nn.Module,
        slot: ContextSlot,
        tkm: TaskKeyMemory,
        layer: int,
        own_tokens: bool = False,
        variant: str = "delo",
    ) -> None:
        num_layers = len(vilt.encoder.layer)
        if layer >= num_layers:
            raise ValueError(f"model.tkm_layer={layer} but the backbone has {num_layers} layers")
        self.slot, self.tkm, self.layer, self.own_tokens = slot, tkm, layer, own_tokens
        self.variant = variant  # DeLo's model.variant: no_guide routes each pool by its own modality
        vilt.embeddings.register_forward_hook(self._on_embeddings)
        vilt.encoder.layer[layer].layernorm_before.register_forward_hook(self._on_key_site)

    def context(self, batch: dict, mode: str, stats: RoutingStats | None = None) -> RoutingContext:
        """A fresh routing context of one forward in ``mode`` (the guided queries by the missing codes)."""
        missing = batch["missing"].long()
        return RoutingContext(
            missing=missing,
            text_len=batch["input_ids"].shape[1],
            mode=mode,
            guide=guide_index(missing, mode, self.variant),
            stats=stats,
        )

    def assign_tasks(
        self, ctx: RoutingContext, batch: dict, task: int | None, num_tasks: int, run: Callable[[], object]
    ) -> None:
        """Each sample's task, as far as it is known before the forward: ``train`` / ``proxy`` all on ``task``,
        ``task_aware`` the true ones; ``agnostic`` leaves it to the key site during the forward, except with a
        deeper key site (``layer > 0``), whose query the adapter-free pass ``run`` computes first. ``train``
        gets its key query the same way."""
        if ctx.mode in ("train", "proxy"):
            ctx.set_task(torch.full_like(ctx.missing, task), task, num_tasks)
        elif ctx.mode == "task_aware":
            ctx.set_task(batch["task"].to(ctx.missing.device, torch.long), None, num_tasks)
        if ctx.mode in ("train", "agnostic") and self.layer > 0:
            # The task must be known before the first adapted linear, which sits below a deeper key site.
            ctx.key_query = self.key_query(batch, run)
            if ctx.mode == "agnostic":
                ctx.set_task(self.tkm.infer(ctx.key_query, ctx.missing), None, num_tasks)

    def key_query(self, batch: dict, run: Callable[[], object]) -> Tensor:
        """The TKM query of ``batch`` from the adapter-free pass ``run`` up to the key site."""
        return self.query_pass(self.context(batch, "keys"), run)

    @torch.no_grad()
    def infer_task(self, batch: dict, run: Callable[[], object]) -> Tensor:
        """(B,) the task the Task-Key Memory assigns each sample (the query an agnostic forward routes with)."""
        query = self.key_query(batch, run)
        return self.tkm.infer(query, batch["missing"].long().to(query.device))

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
