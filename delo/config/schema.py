"""The run-config schema: sections model, data, train, loss, eval, debug and a top-level seed.

``model.method``'s values and the ``model.<method>`` sections come from the method registry
(:mod:`delo.methods.registry`, each section declared beside its method's code); DeLo's flat ``model.*`` keys and
the ``loss`` section from :mod:`delo.methods.delo.config`. Loading and overrides: :mod:`delo.config.loading`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, create_model, model_validator

from delo.config.section import Section
from delo.methods.delo.config import DeLoKeys, LossConfig
from delo.methods.registry import METHOD_NAMES, METHODS

DEFAULT_PROFILE = Path(__file__).resolve().parents[2] / "sweeps" / "profiles" / "synthetic.yaml"
"""The embedded default run (synthetic benchmark, tiny ViLT, its own lr / batch): what ``launch/train.py`` runs
without a config file. The schema defaults themselves are the paper's real-data settings (method.md §10)."""

Method = Literal[METHOD_NAMES]


class _Backbone(Section):
    backbone: str = "tiny"
    """`tiny` (the shipped pretrained ViLT), a hub id such as `dandelin/vilt-b32-mlm`, or a local folder."""
    method: Method = "delo"
    """The continual method on the frozen ViLT: `delo` or a comparator (docs/methods.md). The keys without a
    method prefix (`E`, `r`, `variant`, ...) and the `loss` section are DeLo's."""


class _ModelKeys(DeLoKeys, _Backbone):
    """The keys every method reads (backbone, method, targets, text length) after DeLo's flat keys."""

    targets: tuple[str, ...] = (
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
    )
    """Dotted-name suffixes of the ViltModel linears to adapt."""
    max_text_len: int = Field(40, ge=8)
    """Text tokens; above the backbone's table the position table is interpolated."""

    @model_validator(mode="after")
    def _rank_below_pool(self) -> _ModelKeys:
        if self.method != "delo" and self.variant != "delo":
            raise ValueError(
                f"model.variant={self.variant} is DeLo's ablation switch; with model.method={self.method} leave "
                "it at delo (compare delo_lora as model.method=delo, model.variant=delo_lora)"
            )
        if self.method == "delo" and self.variant != "delo_lora" and self.r >= self.E:
            raise ValueError(f"model.r={self.r} must be < model.E={self.E} (r of E factors are selected)")
        if not self.targets:
            raise ValueError("model.targets must name at least one linear layer suffix")
        # the active method's own cross-key checks (its section's check_with, declared beside its code)
        check = getattr(getattr(self, self.method, None), "check_with", None)
        if check is not None:
            check(self)
        return self


def _method_sections() -> dict[str, Any]:
    """``model.<name>``: each registered method's own keys, in registry order (docs/methods.md)."""
    sections = {}
    for entry in METHODS.values():
        cls = entry.section_class()
        if cls is not None:
            sections[entry.name] = (cls, Field(cls(), description=(cls.__doc__ or "").strip()))
    return sections


ModelConfig = create_model(
    "ModelConfig",
    __base__=_ModelKeys,
    __module__=__name__,
    __doc__="`model.*`: the backbone, the method and every method's keys.",
    **_method_sections(),
)


MissingType = Literal["text", "image", "both"]


class MissingConfig(Section):
    eta: float = Field(0.7, ge=0.0, le=1.0)
    """Missing rate: floor(N * eta) samples per session miss a modality."""
    type: MissingType = "both"
    """`text`, `image`, or `both` (half text-missing, half image-missing)."""


class SyntheticConfig(Section):
    kind: Literal["mc", "ml"] = "mc"
    """`mc`: multi-class (Food101 layout); `ml`: multi-label (MM-IMDb layout)."""
    seed: int = 0
    """Generator seed of the benchmark (not the training seed)."""
    dominant: float = Field(0.0, ge=-1.0, le=1.0)
    """Shift evidence toward text (> 0) or image (< 0)."""
    session_cue: float = Field(0.0, ge=0.0, le=1.0)
    """Share of samples showing their session's cue, a background hue and topic words (0: none, world v3)."""
    scale: float = Field(1.0, gt=0.0, le=20.0)
    """Multiplier on the per-class sample counts."""


class DataConfig(Section):
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


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    """Epochs per task (paper silent; the authors' config uses 10 on real data)."""
    batch_size: int = Field(4, ge=1)
    """Training batch size (paper: 4; the synthetic profile sets 8)."""
    lr: float = Field(1e-4, gt=0)
    """AdamW learning rate, fresh optimiser per task (paper: 1e-4; the synthetic profile sets DeLo's searched 3.48e-3)."""
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


class EvalConfig(Section):
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


class DebugConfig(Section):
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


class RunConfig(Section):
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
