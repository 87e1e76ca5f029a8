"""Keys of `model.method=map / msp / l2p / dualprompt / rebq` (docs/methods.md#prompt-baselines): a light module (pydantic only) the config schema reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, model_validator

from delo.config.section import Section

HeadLogits = Literal["own", "seen"]


class _MapProtocol(Section):
    """MAP's classifier protocol (its code, `vilt/modules/vilt_missing_aware_prompt_module.py` and
    `objectives.py`), shared by MAP and MSP (whose code builds on MAP's)."""

    head: Literal["mlp", "linear"] = "mlp"
    """`mlp` (MAP's code): one classifier over all classes, Linear(d, 2d), LayerNorm, GELU, Linear(2d, C), whose
    shared layers and every row seen so far train in every task; `linear` (the uniform protocol of the other
    comparators): one linear head per task, frozen once the next task begins."""
    head_logits: HeadLogits = "seen"
    """Training logits: `seen` (MAP's code: cross-entropy over every class) all classes seen so far; `own` the
    current task's columns alone."""
    train_pooler: StrictBool = True
    """Train ViLT's pooler (MAP's code leaves it out of the frozen backbone) as a tensor of the method, shared
    by every task and carried in task states; false: the pooler stays frozen."""


class _OwnLogits(Section):
    head_logits: HeadLogits = "own"
    """Training logits: `own` (the reference code masks every other task's classes: L2P / DualPrompt's
    train_mask, RebQ's FREEZE_LOGITS) the current head alone; `seen` every seen head (earlier heads frozen),
    cross-entropy over all classes seen so far."""


class MapConfig(_MapProtocol):
    length: int = Field(16, ge=1)
    """Prompt tokens per prompted layer (MAP, Lee et al. CVPR 2023, and its code: prompt_length 16). With
    `position=attention` half are keys and half values, as in MAP's code."""
    layers: tuple[int, ...] | None = None
    """Encoder layers that get a prompt; None: MAP's layers 0-5 of ViLT's 12 (its code's prompt_layers), scaled to
    the backbone's depth (layer i -> floor(i * N / 12))."""
    position: Literal["input", "attention"] = "input"
    """`input` (MAP's default): tokens inserted at each prompted layer's input and kept to the end; `attention`:
    prefix tuning, keys and values prepended inside self-attention."""


class MspConfig(_MapProtocol):
    length: int = Field(16, ge=1)
    """Prompt tokens per modality and prompted layer (MSP, Jang et al. ICASSP 2024, builds on MAP's code; MAP's
    16)."""
    layers: tuple[int, ...] | None = None
    """Encoder layers that get prompts; None: MAP's 0-5 of 12, scaled to the backbone's depth."""
    ortho_weight: float = Field(1.0, ge=0.0)
    """Weight of the orthogonality loss between the image and the text prompt (MSP's value is not in the sources
    we could read; 1.0, swept in sweeps/search_msp.yaml)."""


class L2PConfig(_OwnLogits):
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
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the task's gradient to this total L2 norm before each step (the L2P PyTorch port's --clip-grad 1.0);
    None: no clipping."""

    @model_validator(mode="after")
    def _top_n_in_pool(self) -> L2PConfig:
        if self.top_n > self.pool_size:
            raise ValueError(f"model.l2p.top_n={self.top_n} must be <= model.l2p.pool_size={self.pool_size}")
        return self


class DualPromptConfig(_OwnLogits):
    g_length: int = Field(5, ge=1)
    """G-prompt prefix length L_g (DualPrompt, Wang et al. ECCV 2022: 5); keys and values get L_g rows each."""
    g_layers: tuple[int, ...] | None = None
    """Layers of the shared G-prompt; None: DualPrompt's layers 1-2 (0-based 0, 1) of 12, scaled to the
    backbone's depth."""
    e_length: int = Field(5, ge=1)
    """E-prompt prefix length L_e (the DualPrompt PyTorch port's --length 5, its E-prompt pool's; the paper's
    text: 20)."""
    e_layers: tuple[int, ...] | None = None
    """Layers of the task-specific E-prompts; None: DualPrompt's layers 3-5 (0-based 2, 3, 4) of 12, scaled."""
    key_weight: float = Field(1.0, ge=0.0)
    """Weight lambda of the key-matching loss (DualPrompt's released config: 1.0)."""
    e_init: Literal["previous", "uniform"] = "previous"
    """Init of task k's E-prompt: `previous` (the port's engine, shared_prompt_pool) a copy of E-prompt k-1 as
    task k-1 left it; `uniform` uniform(-1, 1) (task 0 always). The key always starts uniform(-1, 1)."""
    readout: Literal["cls", "pooler"] = "cls"
    """What the heads read: `cls` (the port's head_type token) the final LayerNorm-ed text [CLS] hidden state;
    `pooler` ViLT's pooler on it."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the task's gradient to this total L2 norm before each step (the port's --clip-grad 1.0); None: no
    clipping."""


class RebQConfig(_OwnLogits):
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
    mode: Literal["release", "paper"] = "release"
    """`release` (the released code with its defaults, POOL_SIZE 128, REINIT False): only task 0's components
    are initialised; every later task's start at zero and get zero weight and zero gradient, so from task 1 on
    the prompts equal task 0's and only the heads learn. `paper` (the paper's text): each task adds
    `components_per_task` Gram-Schmidt components that train. docs/methods.md says why `release` is the
    default."""

    @model_validator(mode="after")
    def _even_length(self) -> RebQConfig:
        if self.length % 2:
            raise ValueError(f"model.rebq.length={self.length} must be even (half keys, half values)")
        return self
