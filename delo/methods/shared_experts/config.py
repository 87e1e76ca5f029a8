"""Keys of `model.method=rank1_pool / moe_lora / pass_moe` (docs/methods.md#shared-lora-experts-rank1_pool-moe_lora-pass_moe): a light module (pydantic only) the config schema reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from delo.config.section import Section

TaskInference = Literal["heads", "tkm"]


class RankOnePoolConfig(Section):
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
    task_inference: TaskInference = "heads"
    """Task-agnostic read-out. `heads`: the owner of the best column over every seen class (class-incremental);
    `tkm` (the `+tkm` variant): DeLo's Task-Key Memory (`model.tkm_keys`, `model.beta`, query at encoder layer 0)
    picks each sample's head, as `mora` and `frozen` do, so the adapter is compared with task inference kept
    apart. Needs `model.tkm_layer=0`."""

    def check_with(self, model) -> None:
        """Checks against the other `model.*` keys (the schema calls it when this is the active method)."""
        if self.task_inference == "tkm":
            _needs_layer_zero("model.rank1_pool.task_inference", model)

    @model_validator(mode="after")
    def _within_pool(self) -> RankOnePoolConfig:
        if self.k > self.E or self.ago_top > self.E:
            raise ValueError(
                f"model.rank1_pool.k={self.k} and ago_top={self.ago_top} must be <= E={self.E} (experts per pool)"
            )
        return self


class MoELoRAConfig(Section):
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
    task_inference: TaskInference = "heads"
    """Task-agnostic read-out. `heads`: the owner of the best column over every seen class (class-incremental);
    `tkm` (the `+tkm` variant): DeLo's Task-Key Memory (`model.tkm_keys`, `model.beta`, query at encoder layer 0)
    picks each sample's head, as `mora` and `frozen` do, so the adapter is compared with task inference kept
    apart. Needs `model.tkm_layer=0`. Read by `moe_lora` only: `pass_moe` has its own
    `model.pass_moe.task_inference`."""

    def check_with(self, model) -> None:
        """Checks against the other `model.*` keys (the schema calls it when this is the active method)."""
        if self.task_inference == "tkm":
            _needs_layer_zero("model.moe_lora.task_inference", model)


class PASsMoEConfig(Section):
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
    task_inference: TaskInference = "heads"
    """Task-agnostic read-out. `heads`: the owner of the best column over every seen class (class-incremental);
    `tkm` (the `+tkm` variant): DeLo's Task-Key Memory (`model.tkm_keys`, `model.beta`, query at encoder layer 0)
    picks each sample's head, as `mora` and `frozen` do, so the adapter is compared with task inference kept
    apart. Needs `model.tkm_layer=0`."""

    def check_with(self, model) -> None:
        """Checks against the other `model.*` keys (the schema calls it when this is the active method)."""
        if model.moe_lora.task_inference != "heads":
            raise ValueError(
                f"model.moe_lora.task_inference={model.moe_lora.task_inference} is moe_lora's switch; with "
                "model.method=pass_moe set model.pass_moe.task_inference"
            )
        if self.task_inference == "tkm":
            _needs_layer_zero("model.pass_moe.task_inference", model)


def _needs_layer_zero(key: str, model) -> None:
    """``+tkm`` reads the Task-Key query at encoder layer 0, before any shared expert runs."""
    if model.tkm_layer != 0:
        raise ValueError(
            f"{key}=tkm reads the Task-Key query at encoder layer 0, before any shared expert runs; "
            f"model.tkm_layer={model.tkm_layer} would read it after adapted layers (these experts have no "
            "adapter-free pass): set model.tkm_layer=0"
        )
