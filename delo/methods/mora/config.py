"""Keys of `model.method=mora` (docs/methods.md#mora): a light module (pydantic only) the config schema reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from delo.config.section import Section


class MoRAConfig(Section):
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
    targets: Literal["model", "qv"] = "model"
    """Linears adapted in each layer: `model` (ours) DeLo's `model.targets` (q, k, v), so the comparison isolates
    the adapter design; `qv` the release's Food101 targets (configs/experiment/mora_food101.yaml: q_proj, v_proj;
    its base config adapts k, v). With `first_layer=10` this is the release's placement."""
    first_layer: int = Field(0, ge=0)
    """Adapt the `model.targets` linears of encoder layers >= first_layer only (0: every layer, as DeLo; the
    authors adapt CLIP's last two layers, 10 and 11 of 12)."""
