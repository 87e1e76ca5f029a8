"""The training loss of task k: L = L_cls + lambda1 * L_align + lambda2 * L_con (method.md §8).

One function, :func:`compute_loss`, runs the main pass (and, when needed, the proxy pass) and returns every
term, so the order of effects is visible here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from delo.config import LossConfig
from delo.model.delo import DeLoModel


@dataclass
class LossOutput:
    total: Tensor  # scalar, what backward runs on
    cls: Tensor
    align: Tensor  # 0 when the batch has no complete sample
    con: Tensor  # 0 without a complete sample, with lambda2 = 0, or for delo_lora


def classification_loss(logits: Tensor, labels: Tensor, span: slice, multilabel: bool) -> Tensor:
    """CE over head k with task-local labels, or mean BCE over task k's label columns.

    logits: (B, C_k) of head k; labels: (B,) global ids, or (B, C_total) multi-hot.
    """
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels[:, span].to(logits.dtype))
    local = labels.long() - span.start
    if not bool(((local >= 0) & (local < logits.shape[1])).all()):
        raise ValueError(f"labels outside task's global ids [{span.start}, {span.stop}) in a training batch")
    return F.cross_entropy(logits, local)


def alignment_loss(queries: list[Tensor], complete: Tensor) -> Tensor:
    """Mean over complete samples and query sites of 1 - cos(q_v, q_t); queries: each (B, 2, d)."""
    stacked = torch.stack(queries)[:, complete]  # (sites, B, 2, d) -> (sites, n_complete, 2, d)
    cos = F.cosine_similarity(stacked[:, :, 0], stacked[:, :, 1], dim=-1)  # (sites, n_complete)
    return (1.0 - cos).mean()


def consistency_loss(true_logits: Tensor, proxy_logits: Tensor, multilabel: bool) -> Tensor:
    """KL(p_true || p_proxy) with p_true detached, averaged over samples (and labels when multi-label).

    Multi-class: softmax KL over C_k. Multi-label: per-label Bernoulli KL.
    """
    true_logits = true_logits.detach().float()
    proxy_logits = proxy_logits.float()
    if not multilabel:
        log_p, log_q = true_logits.log_softmax(-1), proxy_logits.log_softmax(-1)
        return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    # log p, log(1 - p) through logsigmoid to stay finite for large logits.
    log_p, log_1p = F.logsigmoid(true_logits), F.logsigmoid(-true_logits)
    log_q, log_1q = F.logsigmoid(proxy_logits), F.logsigmoid(-proxy_logits)
    kl = log_p.exp() * (log_p - log_q) + log_1p.exp() * (log_1p - log_1q)  # (n, C_k)
    return kl.mean()


def compute_loss(model: DeLoModel, batch: dict, task: int, loss_cfg: LossConfig) -> LossOutput:
    """All loss terms of one training step on task ``task`` (updates that task's key: a train-mode pass)."""
    out = model(batch, "train", task=task)
    span = model.head_span(task)
    logits = out.scores[:, span]  # (B, C_k)
    cls = classification_loss(logits, batch["labels"], span, model.multilabel)
    complete = batch["missing"] == 0
    zero = logits.new_zeros(())
    has_complete = bool(complete.any())
    align = alignment_loss(out.queries, complete) if has_complete and out.queries else zero
    con = zero
    if has_complete and loss_cfg.lambda2 > 0 and model.cfg.variant != "delo_lora":
        subset = {
            k: v[complete] for k, v in batch.items() if torch.is_tensor(v) and v.shape[:1] == complete.shape
        }
        proxy = model(subset, "proxy", task=task)
        con = consistency_loss(logits[complete], proxy.scores[:, span], model.multilabel)
    total = cls + loss_cfg.lambda1 * align + loss_cfg.lambda2 * con
    return LossOutput(total=total, cls=cls, align=align, con=con)
