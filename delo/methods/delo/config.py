"""DeLo's keys (docs/method.md §11, docs/method-choices.md): the `model.*` keys without a method prefix and the
`loss` section. A light module (pydantic only) that the config schema reads; the names follow the paper
(`model.E`, `model.r`, `model.alpha`, `model.beta`, `loss.lambda1`, `loss.lambda2`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from delo.config.section import Section

VARIANTS = ("delo", "delo_lora", "no_guide", "unified_pool")
"""`model.variant`: DeLo's Table 4 ablation (full method, one static LoRA per task, no cross-modal guide, one
shared pool)."""


class DeLoKeys(Section):
    """The flat `model.*` keys of DeLo (``ModelConfig`` inherits them; `model.tkm_*` and `model.beta` are also
    read by MoRA, which uses DeLo's Task-Key Memory)."""

    variant: Literal[VARIANTS] = "delo"
    """DeLo's Table 4 ablation: full method, one static LoRA per task, no cross-modal guide, one shared pool
    (only with `model.method=delo`)."""
    E: int = Field(16, ge=1)
    """Factors (pool entries) per pool (per site, modality and task); rank one unless `model.entry_rank=r`."""
    r: int = Field(4, ge=1)
    """Factors selected per input (1 <= r < E); for `delo_lora` the LoRA rank."""
    alpha: float = Field(8.0, gt=0)
    """Delta scale: the delta is scaled by alpha / r (`model.scale=alpha_over_r`) or by alpha (`model.scale=alpha`)."""
    beta: float = Field(0.99, ge=0.0, lt=1.0)
    """Task-key EMA momentum: key <- beta * key + (1 - beta) * mean(u) (per modality: mean over real ones)."""
    gate: Literal["ste", "weighted", "hard"] = "ste"
    """How the top-r selection passes gradient to routers (method.md §5)."""
    delta_scope: Literal["all", "own_tokens"] = "all"
    """`all`: both deltas on every token (paper); `own_tokens`: vision delta on image tokens only, text on text."""
    tkm_layer: int = Field(0, ge=0)
    """Encoder layer whose (LayerNorm-ed) input gives the task-key query; 0 costs no extra pass."""
    tkm_keys: Literal["shared", "per_modality"] = "per_modality"
    """Task keys: `shared` is the paper's one key per task (EMA of u = (q̂_v + q̂_t) / 2); `per_modality` keeps a
    key per task for each of q_v and q_t (EMA over samples where that modality is real) and scores each sample
    with the modalities it has."""
    pairing: Literal["rank", "index", "compat"] = "rank"
    """Which selected A pairs with which selected B (method.md §5.3, docs/method-choices.md). `rank` (paper): slot
    i pairs the i-th best A with the i-th best B; `index` (ours): both selected sets sorted by factor index, so the
    pairing only changes when the selected sets change, not when scores reorder within them; `compat` (ours): each
    selected A, best first, takes the B that maximises softmax(B router) + softmax(M[a, :]), no B twice."""
    entry_rank: Literal["one", "r"] = "one"
    """Pool layout. `one` (paper's text): rank-one entries (A E x d_in, B E x d_out), routers without bias, an
    E x E map M. `r` (authors' code): rank-r entries (A E x r x d_in, B E x r x d_out), routers with bias and an
    r x d_in x E compatibility tensor; the r selected entries contribute r x r rank-one terms."""
    scale: Literal["alpha_over_r", "alpha"] = "alpha_over_r"
    """Delta scale s: `alpha_over_r` (ours, LoRA convention) s = alpha / r; `alpha` (authors' code) s = alpha."""
    a_init: Literal["kaiming", "gaussian"] = "kaiming"
    """Init of the A factors: `kaiming` (ours, nn.Linear / LoRA's A) or `gaussian` (paper's "random Gaussian")
    with std `model.a_init_std`. B starts at 0 either way, so the model equals the backbone at step 0."""
    a_init_std: float = Field(1.0, gt=0)
    """Std of the A factors under `model.a_init=gaussian` (the authors' code uses 1)."""


class LossConfig(Section):
    lambda1: float = Field(0.1, ge=0.0)
    """Weight of the alignment loss (1 - cos(q_v, q_t) on complete samples)."""
    lambda2: float = Field(0.1, ge=0.0)
    """Weight of the consistency loss (KL between true and proxy routing)."""
    con_proxy: Literal["swap", "inference"] = "swap"
    """Routing of L_con's proxy pass on complete samples. `swap` (paper's text): vision pools by q_t and text pools
    by q_v in one pass; `inference` (ours): the two routings that occur at inference, (q_v, q_v) as if text were
    missing and (q_t, q_t) as if the image were missing, in one pass over the doubled subset, KL averaged."""
    con_grad: Literal["all", "main_rows"] = "all"
    """Which factor rows L_con trains. `all` (paper): every row the proxy pass gathers; `main_rows` (ours): only
    the pool entries the main pass also selected in this step (other rows are detached in the proxy pass);
    routers and M get L_con's gradient either way."""
    align_layers: Literal["all", "first", "last"] = "all"
    """Query sites of L_align: `all` (ours: one per adapted layer), `first` (the first adapted layer's input only,
    where the authors compute it; frozen there, so a constant), `last` (the deepest adapted layer's input only)."""
