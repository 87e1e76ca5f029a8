"""MoRA (Zhao et al., "MoRA: Missing Modality Low-Rank Adaptation for Visual Recognition", ICLR 2026, arXiv
2511.06225), run task-partitioned with DeLo's Task-Key Memory (docs/methods.md, section mora).

MoRA adapts a vision and a text path with modality-specific low-rank factors plus modality-common factors that
couple the two paths in the rank space. Per adapted layer a common pair A (text side, d x r_c) and B (vision side,
d x r_c) gives the Gram matrices G^v = B^T B and G^t = A^T A (r_c x r_c); the text path's common update is
A G^v A^T and the vision path's is B G^t B^T, so a loss seen only through text tokens still moves B (through
G^v), and one seen only through image tokens moves A. Each adapted linear adds its own vision factors a^v b^v and
text factors a^t b^t. With ``model.mora.compose=dora`` (the authors' release) each path's weight is
m_c * (W + alpha dW_c) / ||.||_col + m_s * (W + alpha dW_s) / ||.||_col; with ``lora`` it is
W + alpha (dW_c + dW_s). Either way the update of a path is a fixed matrix, so it merges into the frozen weight
(:meth:`MoRALinear.merged_weight`).

ViLT is single-stream, so the "vision path" and "text path" of a q/k/v linear are its image tokens and its text
tokens (the first L_t = input text length positions are text, as DeLo splits its queries): image tokens see
W + dW^v, text tokens W + dW^t.

MoRA is not continual; here each task gets its own MoRA (common factors, specific factors, magnitudes), its own
head and a Task-Key Memory key; earlier tasks are frozen, and a task-agnostic forward routes each sample to the
task its key query picks (DeLo's query at ``model.tkm_layer``, through :class:`delo.vilt.key_site.KeySite`).
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn
from transformers import ViltModel

from delo.config import ModelConfig
from delo.methods.base import ParameterGroups
from delo.methods.keyed import KeyedMethod
from delo.methods.mora.config import MoRAConfig
from delo.vilt.context import ContextSlot
from delo.vilt.inject import WrappedLinear, inject

VISION, TEXT = 0, 1  # path index, in the order of DeLo's [q_v, q_t]
# ``model.mora.targets=qv``: the release's Food101 targets (q_proj, v_proj) as ViLT's linear suffixes
RELEASE_TARGETS = ("attention.attention.query", "attention.attention.value")
_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def encoder_layer(name: str) -> int:
    """The encoder layer index of a dotted ViLT module name; MoRA's common factors are per layer."""
    match = _LAYER.search(name)
    if match is None:
        raise ValueError(
            f"MoRA adapts encoder-layer linears only (its common factors are per layer); got {name!r}"
        )
    return int(match.group(1))


class MoRACommon(nn.Module):
    """One task's modality-common factors of one encoder layer, shared by every adapted linear of that layer.

    ``A`` (d, r_c) is the text side, ``B`` (d, r_c) the vision side; both start N(0, 1/r_c) as in the authors'
    release (a zero factor would make both paths' updates, quadratic in it, gradient-free).
    """

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.randn(dim, rank) / math.sqrt(rank))  # (d, r_c) text side
        self.B = nn.Parameter(torch.randn(dim, rank) / math.sqrt(rank))  # (d, r_c) vision side

    def factors(self, path: int, coupling: str) -> tuple[Tensor, Tensor]:
        """(U, G) of a path's common update U G U^T: the path's own factor and the other side's Gram matrix.

        ``gram``: text (A, G^v = B^T B), vision (B, G^t = A^T A). ``none`` (ablation): (A, I) and (B, I).
        """
        own, other = (self.B, self.A) if path == VISION else (self.A, self.B)
        if coupling == "gram":
            return own, other.T @ other  # (d, r_c), (r_c, r_c)
        if coupling == "none":
            return own, torch.eye(own.shape[1], device=own.device, dtype=own.dtype)
        raise ValueError(f"unknown model.mora.coupling {coupling!r}; expected 'gram' or 'none'")


class MoRASpecific(nn.Module):
    """One task's modality-specific factors of one linear, and (``dora``) its four magnitude vectors.

    ``a[m]`` (d_in, r_m) starts N(0, 1/r_m) and ``b[m]`` (r_m, d_out) at zero (the authors' init). ``magnitude``
    (2 [common, specific], 2 [vision, text], d_in) starts at the frozen weight's column norms ||W||_col.
    """

    def __init__(self, linear: nn.Linear, ranks: tuple[int, int], compose: str) -> None:
        super().__init__()
        d_in, d_out = linear.in_features, linear.out_features
        like = {"device": linear.weight.device, "dtype": linear.weight.dtype}
        self.a = nn.ParameterList([nn.Parameter(torch.randn(d_in, r, **like) / math.sqrt(r)) for r in ranks])
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(r, d_out, **like)) for r in ranks])
        if compose == "dora":
            norms = linear.weight.detach().norm(dim=0)  # (d_in,): ||W||_col, W is (d_out, d_in)
            self.magnitude = nn.Parameter(norms.expand(2, 2, -1).clone())  # (2, 2, d_in)
        elif compose != "lora":
            raise ValueError(f"unknown model.mora.compose {compose!r}; expected 'dora' or 'lora'")


class MoRALinear(WrappedLinear):
    """A frozen ``base_layer`` whose text tokens see W + dW^t_k and image tokens W + dW^v_k, k each sample's task.

    The forward is the factored one (the input through the low-rank factors, never a d x d update); the closed
    form of the same weight is :meth:`merged_weight`. Outside a routing context it raises; in the context mode
    ``keys`` (the adapter-free pass to the key site) it is the frozen linear.
    """

    def __init__(self, base: nn.Linear, site: str, slot: ContextSlot, cfg: MoRAConfig, common: nn.ModuleList):
        super().__init__()
        if base.in_features != base.out_features:
            raise ValueError(
                f"{site}: MoRA's common update U G U^T is d_in x d_in, so it adapts square linears only "
                f"(this one is {base.out_features} x {base.in_features})"
            )
        self.base_layer = base
        self.site = site
        self.cfg = cfg
        self._slot = slot
        self._common = (common,)  # the model owns (and registers) the layer's common factors
        self.tasks = nn.ModuleList()

    @property
    def common(self) -> nn.ModuleList:
        """Per-task :class:`MoRACommon` of this linear's encoder layer."""
        return self._common[0]

    def add_task(self) -> None:
        self.tasks.append(
            MoRASpecific(self.base_layer, (self.cfg.vision_rank, self.cfg.text_rank), self.cfg.compose)
        )

    def _parts(self, k: int, path: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(U, G, a, b) of task k's path: common update U G U^T (d_in x d_in), specific a b (d_in x d_out)."""
        u, g = self.common[k].factors(path, self.cfg.coupling)
        spec = self.tasks[k]
        return u, g, spec.a[path], spec.b[path]

    def _column_scales(self, k: int, path: int) -> tuple[Tensor, Tensor]:
        """``dora``: (m_c / ||W + alpha dW_c||_col, m_s / ||W + alpha dW_s||_col), each (d_in,)."""
        u, g, a, b = self._parts(k, path)
        w, alpha = self.base_layer.weight, self.cfg.alpha
        common = w + alpha * (u @ g @ u.T).T  # (d_out, d_in); the nn.Linear weight layout
        specific = w + alpha * (a @ b).T  # (d_out, d_in)
        magnitude = self.tasks[k].magnitude[:, path]  # (2, d_in)
        return magnitude[0] / common.norm(dim=0), magnitude[1] / specific.norm(dim=0)

    def merged_weight(self, k: int, path: int) -> Tensor:
        """(d_out, d_in) the weight task k's path computes with, in closed form: W + dW^path_k."""
        u, g, a, b = self._parts(k, path)
        w, alpha = self.base_layer.weight, self.cfg.alpha
        common, specific = alpha * (u @ g @ u.T).T, alpha * (a @ b).T  # (d_out, d_in) each
        if self.cfg.compose == "lora":
            return w + common + specific
        scale_c, scale_s = self._column_scales(k, path)
        return (w + common) * scale_c + (w + specific) * scale_s  # column j scaled by m_j / ||.||_j

    def _path(self, x: Tensor, k: int, path: int) -> Tensor:
        """x (B, L, d_in) tokens of one path -> (B, L, d_out), factored."""
        u, g, a, b = self._parts(k, path)
        alpha = self.cfg.alpha
        if self.cfg.compose == "lora":
            low_rank = (x @ u) @ g @ u.T + (x @ a) @ b  # (B, L, d_out)
            return self.base_layer(x) + alpha * low_rank
        scale_c, scale_s = self._column_scales(k, path)  # (d_in,) each
        x_c, x_s = x * scale_c, x * scale_s  # x diag(m / ||.||): the magnitude-direction weight, per column
        low_rank = (x_c @ u) @ g @ u.T + (x_s @ a) @ b  # (B, L, d_out)
        return self.base_layer(x_c + x_s) + alpha * low_rank  # one frozen matmul serves both branches

    def _task_forward(self, x: Tensor, k: int, text_len: int) -> Tensor:
        """x (B, S, d_in), every sample on task k: text tokens through the text path, the rest the vision path."""
        return torch.cat(
            [self._path(x[:, :text_len], k, TEXT), self._path(x[:, text_len:], k, VISION)], dim=1
        )

    def forward(self, x: Tensor) -> Tensor:
        ctx = self._slot.get()
        if ctx.mode == "keys":
            return self.base_layer(x)
        if ctx.task is None:
            raise RuntimeError(f"{self.site}: no task assigned before the first adapted linear")
        if ctx.uniform_task is not None:
            return self._task_forward(x, ctx.uniform_task, ctx.text_len)
        out = None
        for k in torch.unique(ctx.task).tolist():  # one merged-weight group per task present
            rows = (ctx.task == k).nonzero().squeeze(1)  # (n_k,)
            y = self._task_forward(x[rows], k, ctx.text_len)  # (n_k, S, d_out)
            out = y.new_zeros((x.shape[0], *y.shape[1:])) if out is None else out
            out = out.index_copy(0, rows, y)
        return out


class MoRAModel(KeyedMethod):
    """One MoRA per task on the frozen ViLT's ``model.targets`` (or, with ``model.mora.targets=qv``, the release's
    q and v) of layers >= ``model.mora.first_layer``, per-task heads, and DeLo's Task-Key Memory for
    task-agnostic inference.

    The key routing, training loss and read-outs are :class:`~delo.methods.keyed.KeyedMethod`'s; the wrapped
    linears read each sample's task from the routing context.
    """

    head_first = False  # task k's factors are drawn before its head

    def __init__(self, vilt: ViltModel, cfg: ModelConfig, multilabel: bool) -> None:
        mora = cfg.mora
        num_layers = len(vilt.encoder.layer)
        if mora.first_layer >= num_layers:
            raise ValueError(
                f"model.mora.first_layer={mora.first_layer} but the backbone has {num_layers} layers"
            )
        super().__init__(vilt, cfg, multilabel)  # the Task-Key Memory's hooks before the linears are wrapped
        # Each encoder layer's per-task common factors, created before the linears that share them.
        self.common = nn.ModuleDict({str(i): nn.ModuleList() for i in range(mora.first_layer, num_layers)})
        suffixes = cfg.targets if mora.targets == "model" else RELEASE_TARGETS
        targets = tuple(
            f"encoder.layer.{i}.{t}" for i in range(mora.first_layer, num_layers) for t in suffixes
        )

        def wrap(name: str, linear: nn.Linear) -> MoRALinear:
            return MoRALinear(linear, name, self._slot, mora, self.common[str(encoder_layer(name))])

        self.site_names = inject(vilt, targets if mora.first_layer > 0 else suffixes, wrap)
        self._sites: list[MoRALinear] = [vilt.get_submodule(n) for n in self.site_names]
        adapted = {str(encoder_layer(n)) for n in self.site_names}
        for layer in set(self.common) - adapted:  # no target in that layer: no common factors either
            del self.common[layer]

    @property
    def sites(self) -> list[MoRALinear]:
        """The wrapped linears, in the order of ``site_names`` (sorted dotted names)."""
        return list(self._sites)

    # ------------------------------------------------------------------------------------------------------
    # Tasks, parameters, checkpoints

    def add_task(self, k: int) -> None:
        """Task k's MoRA (common factors per layer, specific factors and magnitudes per linear) and key."""
        weight = self.vilt.pooler.dense.weight
        for commons in self.common.values():
            commons.append(MoRACommon(self.hidden, self.cfg.mora.common_rank).to(weight.device, weight.dtype))
        for site in self._sites:
            site.add_task()
        super().add_task(k)  # the key

    def state_tensors(self, k: int) -> dict[str, Tensor]:
        """Task k's parameters by name (common per layer, specific per site) and its task key."""
        tensors = {
            f"common.{layer}.{name}": p
            for layer, commons in self.common.items()
            for name, p in commons[k].named_parameters()
        }
        tensors.update(
            {f"sites.{s.site}.{name}": p for s in self._sites for name, p in s.tasks[k].named_parameters()}
        )
        return {**tensors, **self.key_tensors(k)}

    def adapter_groups(self, k: int) -> ParameterGroups:
        """Everything of task k trains at ``train.lr`` (MoRA has no routers)."""
        self.check_task(k)
        return ParameterGroups(main=[t for n, t in self.state_tensors(k).items() if n != "task_key"])
