"""The training loss of task k: L = L_cls + lambda1 * L_align + lambda2 * L_con (method.md §8).

One function, :func:`compute_loss`, runs the main pass (and, when needed, the proxy pass) and returns every
term, so the order of effects is visible here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from delo.methods.delo.config import LossConfig
from delo.methods.heads import classification_loss

if TYPE_CHECKING:
    from delo.methods.delo.model import DeLoModel


@dataclass
class LossOutput:
    total: Tensor  # scalar, what backward runs on
    cls: Tensor
    align: Tensor  # 0 when the batch has no complete sample
    con: Tensor  # 0 without a complete sample, with lambda2 = 0, or for delo_lora
    # lead site -> (2 [A, B], G, P, E) entries gathered by the main / proxy pass (when rows were recorded)
    rows_main: dict[str, Tensor] | None = None
    rows_proxy: dict[str, Tensor] | None = None

    @property
    def parts(self) -> dict[str, Tensor]:
        """The unweighted terms, as every method's loss names its parts (train_loss_<name>)."""
        return {"cls": self.cls, "align": self.align, "con": self.con}


ALIGN_SITES = {"all": slice(None), "first": slice(0, 1), "last": slice(-1, None)}


def alignment_loss(queries: list[Tensor], complete: Tensor, layers: str = "all") -> Tensor:
    """Mean over complete samples and query sites of 1 - cos(q_v, q_t); queries: each (B, 2, d), shallowest
    first. ``layers``: every query site, the first (shallowest) or the last (deepest) only."""
    stacked = torch.stack(queries[ALIGN_SITES[layers]])[
        :, complete
    ]  # (sites, B, 2, d) -> (sites, n_complete, 2, d)
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


def proxy_inputs(batch: dict, complete: Tensor, kind: str) -> tuple[dict, Tensor]:
    """The proxy pass's batch and routing (n', 2) for L_con: rows of ``guide`` name the raw query (0 = q_v,
    1 = q_t) that routes the vision and the text pool.

    ``swap``: the n complete samples once, routed (q_t, q_v). ``inference``: the complete samples twice, first
    routed (q_v, q_v) (as if text were missing, code 1), then (q_t, q_t) (as if the image were missing, code 2).
    """
    subset = {
        k: v[complete] for k, v in batch.items() if torch.is_tensor(v) and v.shape[:1] == complete.shape
    }
    n = int(complete.sum())
    device = complete.device
    if kind == "swap":
        return subset, torch.tensor([[1, 0]], device=device).expand(n, 2)
    if kind != "inference":
        raise ValueError(f"unknown loss.con_proxy {kind!r}; expected 'swap' or 'inference'")
    doubled = {k: torch.cat([v, v]) for k, v in subset.items()}
    guide = torch.tensor([[0, 0], [1, 1]], device=device).repeat_interleave(n, dim=0)  # (2n, 2)
    return doubled, guide


def compute_loss(
    model: DeLoModel, batch: dict, task: int, loss_cfg: LossConfig, record_rows: bool = False
) -> LossOutput:
    """All loss terms of one training step on task ``task`` (updates that task's key: a train-mode pass).

    ``record_rows`` also returns the pool entries each pass gathered (training diagnostics).
    """
    main_rows = loss_cfg.con_grad == "main_rows"
    out = model(batch, "train", task=task, record_rows=record_rows or main_rows)
    span = model.head_span(task)
    logits = out.scores[:, span]  # (B, C_k)
    cls = classification_loss(logits, batch["labels"], span, model.multilabel)
    complete = batch["missing"] == 0
    zero = logits.new_zeros(())
    has_complete = bool(complete.any())
    align = (
        alignment_loss(out.queries, complete, loss_cfg.align_layers) if has_complete and out.queries else zero
    )
    con, proxy_rows = zero, None
    if has_complete and loss_cfg.lambda2 > 0 and model.cfg.variant != "delo_lora":
        inputs, guide = proxy_inputs(batch, complete, loss_cfg.con_proxy)
        proxy = model(inputs, "proxy", task=task, guide=guide, record_rows=record_rows,
                      keep_rows=out.rows if main_rows else None)  # fmt: skip
        true = logits[complete]  # (n, C_k)
        true = true.repeat(proxy.scores.shape[0] // true.shape[0], 1)  # (n', C_k): once per proxy routing
        # batchmean over the n' = k n rows is the mean of the k routings' KL terms
        con = consistency_loss(true, proxy.scores[:, span], model.multilabel)
        proxy_rows = proxy.rows
    total = cls + loss_cfg.lambda1 * align + loss_cfg.lambda2 * con
    return LossOutput(total=total, cls=cls, align=align, con=con,
                      rows_main=out.rows if record_rows else None, rows_proxy=proxy_rows)  # fmt: skip
