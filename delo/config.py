# Over 450 lines: the documented run-config schema plus the loading helpers run and sweep specs share.
"""Typed, frozen, validated run configuration.

A run config has the sections model, data, train, loss, eval, debug and a top-level seed. It is loaded from
YAML (an ``extends:`` key may name a parent file, resolved relative to the child) plus dotted ``--set a.b=v``
overrides. Every problem is reported at once in one :class:`ConfigError`, each line naming the dotted key, the
bad value and what is allowed; unknown keys get a "did you mean" suggestion.

Names follow the paper (method.md §11): ``model.E``, ``model.r``, ``model.alpha``, ``model.beta``,
``loss.lambda1``, ``loss.lambda2``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

DEFAULT_PROFILE = Path(__file__).resolve().parents[1] / "sweeps" / "profiles" / "synthetic.yaml"
"""The embedded default run (synthetic benchmark, tiny ViLT, its own lr / batch): what ``launch/train.py`` runs
without a config file. The schema defaults themselves are the paper's real-data settings (method.md §10)."""


class ConfigError(ValueError):
    """A config problem; the launchers print it and exit with status 2."""


class DamagedFileError(ConfigError):
    """A file the project wrote earlier cannot be read back (cut short by a full disk or a partial copy,
    overwritten, not ours). The message names the file, what is wrong with it and what to do; launchers exit 2."""

    def __init__(self, path: str | Path, problem: str, advice: str):
        self.path, self.problem, self.advice = Path(path), problem, advice
        super().__init__(f"{path}: damaged file ({problem}). {advice}")


def reader_error(exc: BaseException, limit: int = 160) -> str:
    """The first line of a reader's exception, shortened: what a one-line message can carry."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # torch appends paragraphs of advice after the first sentence (one suggests weights_only=False): dropped
    first = lines[0].split(". ", 1)[0].rstrip(".") if lines else ""
    marker = "WeightsUnpickler error:"  # the actual cause, further down, sometimes on the next line
    for n, line in enumerate(lines):
        if marker in line:
            cause = line.split(marker, 1)[1].strip() or (lines[n + 1] if n + 1 < len(lines) else "")
            first = f"{marker} {cause}"
            break
    text = f"{type(exc).__name__}: {first}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Section(BaseModel):
    # Field docstrings become descriptions, so the README's config reference is generated from this file.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


#: every ``model.method``; docs/methods.md has a section per method (delo.methods.REGISTRY builds them)
METHODS = ("delo", "rank1_pool", "moe_lora", "pass_moe", "mora", "map", "msp", "l2p", "dualprompt", "rebq")
Method = Literal[
    "delo", "rank1_pool", "moe_lora", "pass_moe", "mora", "map", "msp", "l2p", "dualprompt", "rebq"
]


class RankOnePoolConfig(_Section):
    """`model.method=rank1_pool`: one LoRA per adapted linear as a pool of E rank-one experts shared by every
    task, a sparse top-k per sample from the [CLS] query, and the Activation-Guided Orthogonal (AGO) loss (Fa et
    al., arXiv 2601.22828; code github.com/Fazhan-cs/DAC). docs/methods.md#rank1_pool."""

    E: int = Field(12, ge=2)
    """Rank-one experts per adapted linear (the LoRA rank; authors' scripts: r=12)."""
    k: int = Field(8, ge=1)
    """Experts selected per sample (1 <= k <= E; authors' code: 8)."""
    alpha: float = Field(1.0, gt=0)
    """LoRA scale numerator: the delta is scaled by alpha / E (authors' code: lora_alpha=1, scaling alpha / r)."""
    query: Literal["site", "layer0"] = "site"
    """Router input. `site` (authors' code): the text [CLS] token of each adapted linear's own input (the
    LayerNorm-ed input of its layer); `layer0` (DeLo's key site): the text [CLS] at encoder layer 0's LayerNorm-ed
    input, one query for every layer."""
    gate: Literal["ste", "hard", "weighted"] = "ste"
    """Weights of the selected experts. `hard` (authors' code): 1 each, so the router gets no gradient and stays
    at its init; `ste` (ours): the same forward, the router trained straight-through the softmax of the selected
    experts; `weighted` (ours): the selected softmax probabilities renormalised to sum 1."""
    ago_weight: float = Field(0.1, ge=0)
    """Weight of the AGO loss (authors' code: 0.1)."""
    ago_top: int = Field(4, ge=1)
    """Most-activated experts per task that AGO orthogonalises: the current task's (by its running selection
    counts) against each earlier task's (by the counts of its end-of-task pass) (authors' code: 4; <= E)."""
    head_logits: Literal["own", "seen"] = "own"
    """Training logits: `own` (paper: CLIP trained on the current task's classes) the current head alone;
    `seen`: every seen head (earlier heads frozen), cross-entropy over all classes seen so far."""

    @model_validator(mode="after")
    def _within_pool(self) -> RankOnePoolConfig:
        if self.k > self.E or self.ago_top > self.E:
            raise ValueError(
                f"model.rank1_pool.k={self.k} and ago_top={self.ago_top} must be <= E={self.E} (experts per pool)"
            )
        return self


class MoELoRAConfig(_Section):
    """The MoE-LoRA architecture shared by `model.method=moe_lora` (plain) and `pass_moe` (which adds the
    `model.pass_moe.*` components): E LoRA experts of rank r per adapted linear, shared by every task, with a
    token-level softmax router (the CoIN MoE-LoRA the PASs-MoE authors build on; arXiv 2601.13020).
    docs/methods.md#moe_lora."""

    E: int = Field(4, ge=2)
    """LoRA experts per adapted linear (ours: the PASs-MoE code's expert_num is set per run)."""
    r: int = Field(4, ge=1)
    """Rank of each expert (ours, the size of DeLo's default selection)."""
    alpha: float = Field(8.0, gt=0)
    """Delta scale numerator: each expert's delta is scaled by alpha / r (peft's lora_alpha / r; ours: 2r)."""
    tau: float = Field(1.6, gt=0)
    """Router softmax temperature (PASs-MoE code: gate_tau=1.6)."""
    head_logits: Literal["own", "seen"] = "own"
    """Training logits: `own` the current head alone; `seen` every seen head (earlier heads frozen)."""


class PASsMoEConfig(_Section):
    """`model.method=pass_moe`: the two PASs components on the `model.moe_lora.*` architecture (Hou et al., arXiv
    2601.13020). docs/methods.md#pass_moe."""

    reweight: Literal["calibrate", "pas_only", "off"] = "calibrate"
    """PAS-guided reweighting. `calibrate` (paper's text): router logits plus each expert's pathway activation
    energy mean_j (q_ej . x)^2 (q_ej an orthonormal basis of the expert's A rows), softmax at `tau`; `pas_only`
    (authors' released gate_router=qr): the energy alone, no router; `off`: the plain router (ablation)."""
    stabilize_weight: float = Field(1.0, ge=0)
    """Weight of PAS-aware rank stabilisation (ours; the authors' code reads it per run, default off)."""
    b_scale: float = Field(0.05, ge=0)
    """Weight of the B columns relative to the A rows in the stabilisation (authors' code: 0.05)."""
    importance_clip: float = Field(10.0, gt=0)
    """Cap on a rank direction's importance after dividing by the site's mean (authors' code: 10)."""
    importance_top_p: float = Field(0.3, gt=0, le=1)
    """Share of a site's rank directions (the most important) that are stabilised (authors' code: 0.3)."""


class MoRAConfig(_Section):
    """MoRA (Zhao et al., ICLR 2026, arXiv 2511.06225; docs/methods.md): one MoRA per task. Defaults follow the
    authors' release (github.com/Tree-Shu-Zhao/MoRA, configs/experiment/mora_food101.yaml) where they map."""

    common_rank: int = Field(4, ge=1)
    """Rank r_c of the modality-common factors A (text side) and B (vision side), one pair per adapted layer and
    task; the Gram matrices G^v = B^T B and G^t = A^T A are r_c x r_c (authors' experiments: 4)."""
    vision_rank: int = Field(4, ge=1)
    """Rank of each adapted linear's vision-specific factors, applied on image tokens (authors' experiments: 4)."""
    text_rank: int = Field(4, ge=1)
    """Rank of each adapted linear's text-specific factors, applied on text tokens (authors' experiments: 4)."""
    alpha: float = Field(0.01, gt=0)
    """Scale of every low-rank update, W + alpha * delta, no division by the rank (authors' Food101 config 0.01,
    MM-IMDb 0.001, base config 0.1)."""
    compose: Literal["dora", "lora"] = "dora"
    """How the updates enter the weight. `dora` (authors' code): per modality, a common and a specific
    magnitude-direction branch, m_c * (W + alpha dW_c) / ||.||_col + m_s * (W + alpha dW_s) / ||.||_col, both
    magnitudes starting at ||W||_col; `lora` (ours, the plain low-rank reading): W + alpha (dW_c + dW_s)."""
    coupling: Literal["gram", "none"] = "gram"
    """Modality-common update of the text path A G^v A^T and of the vision path B G^t B^T (`gram`, the paper), or
    the ablation `none`: A A^T and B B^T, no gradient crosses modalities through the common factors."""
    first_layer: int = Field(0, ge=0)
    """Adapt the `model.targets` linears of encoder layers >= first_layer only (0: every layer, as DeLo; the
    authors adapt CLIP's last two layers, 10 and 11 of 12)."""


class MapConfig(_Section):
    length: int = Field(16, ge=1)
    """Prompt tokens per prompted layer (MAP, Lee et al. CVPR 2023, and its code: prompt_length 16). With
    `position=attention` half are keys and half values, as in MAP's code."""
    layers: tuple[int, ...] | None = None
    """Encoder layers that get a prompt; None: MAP's layers 0-5 of ViLT's 12 (its code's prompt_layers), scaled to
    the backbone's depth (layer i -> floor(i * N / 12))."""
    position: Literal["input", "attention"] = "input"
    """`input` (MAP's default): tokens inserted at each prompted layer's input and kept to the end; `attention`:
    prefix tuning, keys and values prepended inside self-attention."""


class MspConfig(_Section):
    length: int = Field(16, ge=1)
    """Prompt tokens per modality and prompted layer (MSP, Jang et al. ICASSP 2024, builds on MAP's code; MAP's
    16)."""
    layers: tuple[int, ...] | None = None
    """Encoder layers that get prompts; None: MAP's 0-5 of 12, scaled to the backbone's depth."""
    ortho_weight: float = Field(1.0, ge=0.0)
    """Weight of the orthogonality loss between the image and the text prompt (MSP's value is not in the sources
    we could read; 1.0, swept in sweeps/search_msp.yaml)."""


class L2PConfig(_Section):
    pool_size: int = Field(10, ge=1)
    """Prompts in the pool, M (L2P, Wang et al. CVPR 2022: M = 10)."""
    length: int = Field(5, ge=1)
    """Tokens per prompt, L_p (L2P: 5)."""
    top_n: int = Field(5, ge=1)
    """Prompts selected per input, N (L2P: 5)."""
    key_weight: float = Field(0.1, ge=0.0)
    """Weight lambda of the surrogate key-matching loss (L2P's released config: 0.1)."""
    readout: Literal["prompt_mean", "cls"] = "prompt_mean"
    """`prompt_mean` (L2P): the heads read the mean of the prompt tokens' final outputs; `cls`: ViLT's pooler on
    the text [CLS]."""

    @model_validator(mode="after")
    def _top_n_in_pool(self) -> L2PConfig:
        if self.top_n > self.pool_size:
            raise ValueError(f"model.l2p.top_n={self.top_n} must be <= model.l2p.pool_size={self.pool_size}")
        return self


class DualPromptConfig(_Section):
    g_length: int = Field(5, ge=1)
    """G-prompt prefix length L_g (DualPrompt, Wang et al. ECCV 2022: 5); keys and values get L_g rows each."""
    g_layers: tuple[int, ...] | None = None
    """Layers of the shared G-prompt; None: DualPrompt's layers 1-2 (0-based 0, 1) of 12, scaled to the
    backbone's depth."""
    e_length: int = Field(20, ge=1)
    """E-prompt prefix length L_e (DualPrompt: 20)."""
    e_layers: tuple[int, ...] | None = None
    """Layers of the task-specific E-prompts; None: DualPrompt's layers 3-5 (0-based 2, 3, 4) of 12, scaled."""
    key_weight: float = Field(1.0, ge=0.0)
    """Weight lambda of the key-matching loss (DualPrompt's released config: 1.0)."""


class RebQConfig(_Section):
    components_per_task: int = Field(12, ge=1)
    """Prompt components each task adds to every pool (RebQ, Zhao et al. 2024, code: pool 128 over 10 tasks, 12 per
    task)."""
    length: int = Field(8, ge=2)
    """Prompt length: memory prompts are `length` input tokens; image / text prompts `length / 2` key and
    `length / 2` value rows (RebQ code: 8)."""
    layers: tuple[int, ...] | None = None
    """Prompted layers of every pool; None: RebQ's code's layers 0-7 of 12, scaled to the backbone's depth."""
    rec_weight: float = Field(0.01, ge=0.0)
    """Weight of the reconstruction loss (RebQ code: ALPHA 0.01)."""

    @model_validator(mode="after")
    def _even_length(self) -> RebQConfig:
        if self.length % 2:
            raise ValueError(f"model.rebq.length={self.length} must be even (half keys, half values)")
        return self


class ModelConfig(_Section):
    backbone: str = "tiny"
    """`tiny` (the shipped pretrained ViLT), a hub id such as `dandelin/vilt-b32-mlm`, or a local folder."""
    method: Method = "delo"
    """The continual method on the frozen ViLT: `delo` or a comparator (docs/methods.md). The keys without a
    method prefix (`E`, `r`, `variant`, ...) and the `loss` section are DeLo's."""
    variant: Literal["delo", "delo_lora", "no_guide", "unified_pool"] = "delo"
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
    targets: tuple[str, ...] = (
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
    )
    """Dotted-name suffixes of the ViltModel linears to adapt."""
    tkm_layer: int = Field(0, ge=0)
    """Encoder layer whose (LayerNorm-ed) input gives the task-key query; 0 costs no extra pass."""
    tkm_keys: Literal["shared", "per_modality"] = "per_modality"
    """Task keys: `shared` is the paper's one key per task (EMA of u = (q̂_v + q̂_t) / 2); `per_modality` keeps a
    key per task for each of q_v and q_t (EMA over samples where that modality is real) and scores each sample
    with the modalities it has."""
    max_text_len: int = Field(40, ge=8)
    """Text tokens; above the backbone's table the position table is interpolated."""
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
    rank1_pool: RankOnePoolConfig = RankOnePoolConfig()
    """Keys of `model.method=rank1_pool` (docs/methods.md#rank1_pool)."""
    moe_lora: MoELoRAConfig = MoELoRAConfig()
    """MoE-LoRA architecture of `model.method=moe_lora` and `pass_moe` (docs/methods.md#moe_lora)."""
    pass_moe: PASsMoEConfig = PASsMoEConfig()
    """PASs components of `model.method=pass_moe` (docs/methods.md#pass_moe)."""
    mora: MoRAConfig = MoRAConfig()
    """MoRA's keys (`model.method=mora`); it also reads `model.targets` and the Task-Key Memory keys
    `model.tkm_layer`, `model.tkm_keys`, `model.beta`."""
    map: MapConfig = MapConfig()
    """MAP's keys (`model.method=map`, docs/methods.md)."""
    msp: MspConfig = MspConfig()
    """MSP's keys (`model.method=msp`)."""
    l2p: L2PConfig = L2PConfig()
    """L2P's keys (`model.method=l2p`)."""
    dualprompt: DualPromptConfig = DualPromptConfig()
    """DualPrompt's keys (`model.method=dualprompt`)."""
    rebq: RebQConfig = RebQConfig()
    """RebQ's keys (`model.method=rebq`)."""

    @model_validator(mode="after")
    def _rank_below_pool(self) -> ModelConfig:
        if self.method != "delo" and self.variant != "delo":
            raise ValueError(
                f"model.variant={self.variant} is DeLo's ablation switch; with model.method={self.method} leave "
                "it at delo (compare delo_lora as model.method=delo, model.variant=delo_lora)"
            )
        if self.method == "delo" and self.variant != "delo_lora" and self.r >= self.E:
            raise ValueError(f"model.r={self.r} must be < model.E={self.E} (r of E factors are selected)")
        if not self.targets:
            raise ValueError("model.targets must name at least one linear layer suffix")
        return self


MissingType = Literal["text", "image", "both"]


class MissingConfig(_Section):
    eta: float = Field(0.7, ge=0.0, le=1.0)
    """Missing rate: floor(N * eta) samples per session miss a modality."""
    type: MissingType = "both"
    """`text`, `image`, or `both` (half text-missing, half image-missing)."""


class SyntheticConfig(_Section):
    kind: Literal["mc", "ml"] = "mc"
    """`mc`: multi-class (Food101 layout); `ml`: multi-label (MM-IMDb layout)."""
    seed: int = 0
    """Generator seed of the benchmark (not the training seed)."""
    dominant: float = Field(0.0, ge=-1.0, le=1.0)
    """Shift evidence toward text (> 0) or image (< 0)."""
    session_overlap: float = Field(0.0, ge=0.0, le=1.0)
    """Blur of the per-session cues (0 = well separated)."""
    scale: float = Field(1.0, gt=0.0, le=20.0)
    """Multiplier on the per-class sample counts."""


class DataConfig(_Section):
    name: Literal["synthetic", "food101", "mmimdb"] = "synthetic"
    """`synthetic` (embedded benchmark, no download), `food101` (UPMC-Food101) or `mmimdb` (MM-IMDb)."""
    root: str | None = None
    """Dataset folder for food101 / mmimdb (raw layout or CMML manifest layout)."""
    layout: Literal["auto", "raw", "manifest"] = "auto"
    """On-disk layout of data.root: raw (the missing-modality codebase's) or the CMML manifest; auto detects."""
    sessions_file: str | None = None
    """Optional sessions.json overriding the built-in session order."""
    assign: Literal["rarest", "first", "random"] = "rarest"
    """Multi-label: which session a multi-label sample joins."""
    num_tasks: int | None = Field(None, ge=1)
    """Use only the first T sessions (None: all)."""
    missing: MissingConfig = MissingConfig()
    """Missing setting of the train split."""
    val_missing: MissingConfig | None = None
    """Missing setting of val (None: same as train)."""
    test_missing: MissingConfig | None = None
    """Missing setting of test (None: same as train)."""
    mask_seed: int = 0
    """Seed of the missing tables (independent of the training seed)."""
    mmimdb_per_plot: StrictBool = False
    """MM-IMDb: one sample per plot instead of one per movie."""
    square: int | None = Field(None, ge=32)
    """Force square images of this size (the authors' 384 resize); None: the processor's rule."""
    synthetic: SyntheticConfig = SyntheticConfig()
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes (0: load in the training process; the synthetic set is cached in memory)."""

    @model_validator(mode="after")
    def _root_for_real(self) -> DataConfig:
        if self.name != "synthetic" and not self.root:
            raise ValueError(f"data.root must be set for data.name={self.name!r} (the dataset folder)")
        return self


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1)
    """Epochs per task (paper silent; the authors' config uses 10 on real data)."""
    batch_size: int = Field(4, ge=1)
    """Training batch size (paper: 4; the synthetic profile sets 8)."""
    lr: float = Field(1e-4, gt=0)
    """AdamW learning rate, fresh optimiser per task (paper: 1e-4; the synthetic profile sets 5e-3)."""
    router_lr_mult: float = Field(1.0, gt=0)
    """Learning-rate multiplier of the routers (W_A, W_B, their biases) and the compatibility map M: their own
    AdamW parameter group, under the same warm-up + cosine schedule."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas."""
    eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""
    warmup_frac: float = Field(0.1, ge=0.0, lt=1.0)
    """Linear warm-up share of each task's steps, then cosine to 0."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when available (bf16 autocast), else CPU (fp32)."""
    threads: int | None = Field(None, ge=1)
    """Torch CPU threads (None: the CPUs the run was given)."""
    max_steps_per_task: int | None = Field(None, ge=1)
    """Cap on steps per task (smoke runs)."""


class LossConfig(_Section):
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


class EvalConfig(_Section):
    split: Literal["val", "test"] = "val"
    """Split that fills the result matrix used for selection."""
    test: StrictBool = False
    """Also evaluate the test split after every task (stored, never used for selection)."""
    batch_size: int = Field(64, ge=1)
    """Evaluation batch size."""
    reuse_frozen: StrictBool = True
    """Reuse a trained task's predictions in later rows of the matrices: its pools, key and head are frozen, so
    a sample's prediction changes only when the Task-Key Memory routes it elsewhere. Later rows then run the
    expert-free key pass on old tasks' samples plus full forwards for re-routed ones only (same matrices as
    false, which forwards every seen task in every row)."""


class DebugConfig(_Section):
    fail_at_task: int | None = Field(None, ge=1)
    """Raise once after finishing this task (fault-injection for tests)."""
    nan_at_step: int | None = Field(None, ge=1)
    """Make the loss NaN at this global step (fault-injection for tests)."""
    diagnostics: StrictBool = True
    """Training-dynamics scalars in TensorBoard (`dynamics/`): routing entropy and churn on a fixed probe batch per
    epoch, gradient norms of factors / routers / map and the share of factor rows only L_con's pass gathered,
    every `debug.diagnostics_every` steps (DeLo only: other methods have no routers to measure). Never changes
    results."""
    diagnostics_every: int = Field(10, ge=1)
    """Steps between two gradient-norm / proxy-row measurements of `debug.diagnostics`."""


class RunConfig(_Section):
    seed: int = 0
    """Training seed: model init, shuffling, patch order (the missing tables use data.mask_seed)."""
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()
    eval: EvalConfig = EvalConfig()
    debug: DebugConfig = DebugConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Stable hash of everything that changes results (debug knobs excluded)."""
        payload = self.to_dict()
        payload.pop("debug")
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# Loading, overrides, error formatting


# Schema walking (the run config's and the sweep spec's)


def _schema_keys(model: type[BaseModel], prefix: str = "") -> dict[str, type[BaseModel] | None]:
    """Every valid dotted key -> its section class (None for leaves)."""
    keys: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        sub = _section_class(field.annotation)
        keys[dotted] = sub
        if sub is not None:
            keys.update(_schema_keys(sub, dotted + "."))
    return keys


def _section_class(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def annotation_leaves(annotation: Any) -> list[Any]:
    """The leaves of a type annotation: union members, Literal values, Annotated's type, a plain class."""
    if getattr(annotation, "__metadata__", None) is not None:  # Annotated[X, ...]
        return annotation_leaves(annotation.__origin__)
    if isinstance(annotation, type):
        return [annotation]
    args = getattr(annotation, "__args__", ())
    return [leaf for a in args for leaf in annotation_leaves(a)] if args else [annotation]


def fields_at(model: type[BaseModel], loc: tuple | list) -> list[str]:
    """The field names of the model found at a pydantic error location under ``model`` ([] when none is).

    A ``dict[str, X]`` field takes the next step as its key; a discriminated union of models (on ``type``)
    takes the next step as its tag, as pydantic's locations do."""
    parts = [str(p) for p in loc]
    while parts:
        info = model.model_fields.get(parts.pop(0))
        if info is None:
            return []
        annotation = info.annotation
        if getattr(annotation, "__origin__", None) is dict:
            if not parts:
                return []
            parts.pop(0)
            annotation = annotation.__args__[1]
        members = [
            m for m in annotation_leaves(annotation) if isinstance(m, type) and issubclass(m, BaseModel)
        ]
        if len(members) > 1 and parts:
            tag = parts.pop(0)
            members = [m for m in members if tag in annotation_leaves(m.model_fields["type"].annotation)]
        if not members:
            return []
        model = members[0]
    return list(model.model_fields)


VALID_KEYS = _schema_keys(RunConfig)


def check_key(dotted: str) -> None:
    """Raise ConfigError when ``dotted`` is not a key of the run config (with a suggestion)."""
    if dotted not in VALID_KEYS:
        raise ConfigError(_unknown_key_message(dotted))


def _unknown_key_message(dotted: str) -> str:
    close = difflib.get_close_matches(dotted, list(VALID_KEYS), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{dotted}: unknown key{hint}"


# ----------------------------------------------------------------------------------------------------------
# Error formatting


def format_validation_error(
    err: ValidationError,
    title: str,
    unknown: Callable[[tuple, str], str],
    *,
    name_cross_field: bool = False,
) -> str:
    """One ConfigError text for every problem pydantic found: ``title``, then a line per error.

    ``unknown(loc, dotted)`` words an unknown key (with its "did you mean"). A cross-field check (its input is
    the whole section) names its keys itself; ``name_cross_field`` still prefixes its location."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        if e["type"] == "extra_forbidden":
            lines.append(unknown(e["loc"], loc))
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if not isinstance(e.get("input"), dict):
            lines.append(f"{loc or '(top level)'}: {msg} (got {e.get('input')!r})")
        elif name_cross_field:
            lines.append(f"{loc or '(top level)'}: {msg}")
        else:
            lines.append(msg)
    return f"{title}:\n  " + "\n  ".join(lines)


def _format_errors(err: ValidationError, source: str) -> str:
    where = f" in {source}" if source else ""
    return format_validation_error(
        err, f"invalid run config{where}", lambda _, dotted: _unknown_key_message(dotted)
    )


# ----------------------------------------------------------------------------------------------------------
# YAML and key=value


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice (or two keys that differ only in case); the message says where."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a repeated key, or with two keys that differ only in case.

    Plain PyYAML keeps the last of two equal keys without a word, so ``model: {E: 4, E: 8}`` would run E=8 and a
    typo'd ``e:`` next to ``E:`` could shadow a value; both are refused with the key's dotted path and both line
    numbers. Merge keys (``<<: *anchor``) may still be overridden by explicit keys, as YAML intends."""

    def compose_document(self):
        node = super().compose_document()
        _check_keys(node, "")
        return node


def _check_keys(node: yaml.Node, prefix: str) -> None:
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, f"{prefix}[{i}]")
        return
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
        dotted = f"{prefix}.{name}" if prefix else name
        if isinstance(key_node, yaml.ScalarNode):
            first = seen.get(name.casefold())
            if first is not None:
                line, again = first.start_mark.line + 1, key_node.start_mark.line + 1
                if first.value == name:
                    raise DuplicateKeyError(
                        f"duplicated key '{dotted}' (lines {line} and {again}); YAML would silently keep the "
                        "last one. Remove one of them."
                    )
                raise DuplicateKeyError(
                    f"keys '{prefix + '.' if prefix else ''}{first.value}' (line {line}) and '{dotted}' (line "
                    f"{again}) differ only in case; keys are case-sensitive, so one of them is not the "
                    "setting it looks like. Keep the right spelling only."
                )
            seen[name.casefold()] = key_node
        _check_keys(value_node, dotted)


def strict_yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that raises :class:`DuplicateKeyError` for repeated (or case-only different) keys."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_mapping(
    path: str | Path,
    what: str = "config file",
    shape: str = "top level must be a mapping of sections",
    *,
    empty_ok: bool = True,
) -> dict[str, Any]:
    """A YAML file that must hold a mapping; ConfigError naming the file when it is absent, malformed or not a
    mapping (``shape`` says what it should be). An empty file is {} when ``empty_ok``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        data = strict_yaml_load(path.read_text())
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {shape}, got {type(data).__name__}")
    return data


def read_yaml_or_none(path: str | Path) -> Any:
    """A YAML file's content, or None when it is absent or unreadable (bookkeeping files a crash may cut)."""
    try:
        return strict_yaml_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def split_assignment(text: str, what: str = "override", form: str = "section.key=value") -> tuple[str, Any]:
    """``key=value`` -> (key, value read as YAML, so 1e-4, [1, 2] and null work; unparsable text stays a string).
    Without '=': ConfigError "<what> 'text' must look like <form>"."""
    if "=" not in text:
        raise ConfigError(f"{what} {text!r} must look like {form}")
    key, raw = text.split("=", 1)
    try:
        value = strict_yaml_load(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"{what} {text!r}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def read_with_extends(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, merging it over the file its ``extends:`` key names (relative to it)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'extends' cycle through {', '.join(map(str, _seen))}")
    data = read_yaml_mapping(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must be a file path, got {parent!r}")
    base = read_with_extends(path.parent / parent, (*_seen, path))
    return deep_merge(base, data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", parsed value); the value is read as YAML (so 1e-4, [1, 2], null work)."""
    key, value = split_assignment(text)
    check_key(key)
    return key, value


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``data`` with ``dotted`` set to ``value``."""
    head, _, rest = dotted.partition(".")
    out = dict(data)
    if rest:
        child = out.get(head)
        out[head] = set_dotted(child if isinstance(child, dict) else {}, rest, value)
    else:
        out[head] = value
    return out


def key_problem(dotted: str) -> str:
    """The :func:`check_key` message for ``dotted``, or "" when it is a run-config key."""
    try:
        check_key(dotted)
    except ConfigError as exc:
        return str(exc)
    return ""


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with every dotted override set (``data`` is left as it is)."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        out = set_dotted(out, key, value)
    return out


def build_or_collect(data: dict[str, Any], what: str, errors: list[str]) -> RunConfig | None:
    """:func:`build_config`, appending its message to ``errors`` instead of raising (None then)."""
    try:
        return build_config(data, what)
    except ConfigError as exc:
        errors.append(str(exc))
        return None


def build_config(data: dict[str, Any], source: str = "") -> RunConfig:
    """Validate a plain dict into a RunConfig, reporting every problem at once."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
) -> RunConfig:
    """Load a run config: defaults <- YAML file (with extends) <- ``extra`` dict <- dotted overrides."""
    data: dict[str, Any] = read_with_extends(path) if path else {}
    if extra:
        data = deep_merge(data, extra)
    for item in overrides:
        key, value = parse_override(item)
        data = set_dotted(data, key, value)
    return build_config(data, str(path) if path else "")


def reference_table() -> str:
    """Markdown table of every config key with its default and description (README's config reference)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            sub = _section_class(field.annotation)
            if sub is not None and field.default is not None:
                walk(sub, f"{prefix}{name}.")
                continue
            default = (
                field.default.model_dump(mode="json")
                if isinstance(field.default, BaseModel)
                else field.default
            )
            text = (field.description or "").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| `{prefix}{name}` | `{json.dumps(default)}` | {text} |")

    walk(RunConfig, "")
    return "\n".join(rows)
