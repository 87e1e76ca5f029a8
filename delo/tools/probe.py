"""Frozen linear probes: how much of the benchmark's classes a backbone's pooled output exposes linearly.

The probes read ViLT's pooled output (the feature every method's heads see) on the synthetic benchmark's train
split and score a multinomial logistic regression on its test split, per input form: complete inputs, the
image only (the text replaced by the loader's dummy ``""``), the text only (the dummy white image), and
``as_run``: each sample with its own missing code from the run's missing tables (η = 0.7 both by default).
Missing inputs are built by the real loader, exactly as a run builds them.

- :func:`probe`: one regression over all classes of all sessions (chance 1 / 20 on world v3).
- :func:`probe_per_task`: one regression per session over its own 4 classes, scored on that session's test
  samples and averaged over sessions: what a frozen backbone with per-task heads reads when the task is known,
  the reference for a method's task-aware AP (chance 25 %).

Ceilings of world v3 (docs/benchmark.md): the class evidence is in the image for 65 % of the samples and in the
text for 65 %, so one modality alone tops out near 0.65 + 0.35 / 4 ≈ 74 % per task, complete inputs at 100 %,
and the η = 0.7 mix (30 % complete) near 0.3 + 0.7 · 0.74 ≈ 82 %.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from delo.config import RunConfig
from delo.data.collate import make_loader
from delo.data.records import COMPLETE, IMAGE_MISSING, TEXT_MISSING, Sample

FORMS = {"complete": COMPLETE, "image_only": TEXT_MISSING, "text_only": IMAGE_MISSING, "as_run": None}
"""Probe form -> the missing code the loader applies (image only = the text is missing; None: the sample's own)."""


@torch.no_grad()
def pooled_features(
    vilt, backbone, samples: Sequence[Sample], missing: int | None, batch_size: int = 256
) -> Tensor:
    """(N, d) pooled outputs of ``samples``, every sample given missing code ``missing`` (None: its own)."""
    forced = list(samples) if missing is None else [dataclasses.replace(s, missing=missing) for s in samples]
    loader = make_loader(forced, backbone, batch_size, shuffle=False, seed=0)
    feats = []
    for batch in loader:
        out = vilt(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            pixel_values=batch["pixel_values"],
            pixel_mask=batch["pixel_mask"],
        )
        feats.append(out.pooler_output.float())  # (B, d)
    return torch.cat(feats)


def fit_and_score(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, weight_decay: float = 1e-3
) -> float:
    """Accuracy (0..1) of a multinomial logistic regression fitted by full-batch L-BFGS on standardised features.

    Labels are any integers (remapped to the train labels' order). Deterministic: zero init, no sampling.
    """
    classes, y_train = torch.unique(y_train, return_inverse=True)
    idx = torch.searchsorted(classes, y_test).clamp_max(len(classes) - 1)
    y_test = torch.where(classes[idx] == y_test, idx, torch.full_like(idx, -1))  # -1: a class not trained on
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xtr, xte = (x_train - mean) / std, (x_test - mean) / std  # (N, d)
    weight = torch.zeros(xtr.shape[1], len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ weight + bias, y_train) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ weight + bias).argmax(-1) == y_test).float().mean())


def _labels(samples: Sequence[Sample]) -> Tensor:
    return torch.tensor([int(s.label) for s in samples])


def probe(vilt, backbone, train: Sequence[Sample], test: Sequence[Sample]) -> dict[str, float]:
    """{form: test accuracy in percent} of one probe over all classes, fitted on ``train`` per form."""
    scores = {}
    for form, code in FORMS.items():
        x_train = pooled_features(vilt, backbone, train, code)
        x_test = pooled_features(vilt, backbone, test, code)
        scores[form] = round(100.0 * fit_and_score(x_train, _labels(train), x_test, _labels(test)), 2)
    return scores


def probe_per_task(
    vilt, backbone, train: Sequence[Sequence[Sample]], test: Sequence[Sequence[Sample]]
) -> dict[str, float]:
    """{form: mean over tasks of the test accuracy in percent} of one probe per task over its own classes."""
    scores = {}
    for form, code in FORMS.items():
        accs = []
        for task_train, task_test in zip(train, test, strict=True):
            x_train = pooled_features(vilt, backbone, task_train, code)
            x_test = pooled_features(vilt, backbone, task_test, code)
            accs.append(fit_and_score(x_train, _labels(task_train), x_test, _labels(task_test)))
        scores[form] = round(100.0 * sum(accs) / len(accs), 2)
    return scores


def benchmark_tasks(
    cfg: RunConfig, max_test: int | None = None
) -> tuple[list[list[Sample]], list[list[Sample]]]:
    """Per task, the train and test samples of the (multi-class) benchmark of ``cfg`` with the run's missing
    codes, generated if needed. ``max_test`` keeps every k-th test sample of each task (a subset for tests)."""
    from delo.data.benchmark import load_benchmark, prepare_data  # the data package is heavy to import

    if cfg.data.name != "synthetic" or cfg.data.synthetic.kind != "mc":
        raise ValueError(
            "the linear probe reads the multi-class synthetic benchmark (data.synthetic.kind=mc)"
        )
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    train = [bench.split(t, "train") for t in range(bench.num_tasks)]
    test = [bench.split(t, "test") for t in range(bench.num_tasks)]
    if max_test is not None:
        per_task = -(-max_test // bench.num_tasks)
        test = [t[:: -(-len(t) // per_task)] if len(t) > per_task else t for t in test]
    return train, test


def probe_folder(folder: str | Path, threads: int | None = None) -> dict:
    """Both probes of the backbone in ``folder`` on the default profile's world (whole test split), as the
    backbone card records them: ``{"scores": {form: %}, "per_task": {form: %}, "split": description}``."""
    from delo.config import DEFAULT_PROFILE, load_config
    from delo.vilt.backbone import load_backbone

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(DEFAULT_PROFILE, [f"model.backbone={Path(folder).resolve()}"])
    backbone = load_backbone(cfg.model)
    train, test = benchmark_tasks(cfg)
    flat_train, flat_test = [s for t in train for s in t], [s for t in test for s in t]
    world = cfg.data.synthetic
    split = (
        f"benchmark train split ({len(flat_train)}) -> test split ({len(flat_test)}), world kind {world.kind} "
        f"seed {world.seed} (generator version {_generator_version()}), {len(train)} tasks of "
        f"{len({int(s.label) for s in train[0]})} classes; as_run: eta {cfg.data.missing.eta} "
        f"{cfg.data.missing.type}"
    )
    return {
        "scores": probe(backbone.vilt, backbone, flat_train, flat_test),
        "per_task": probe_per_task(backbone.vilt, backbone, train, test),
        "classes": len({int(s.label) for s in flat_test}),
        "split": split,
    }


def _generator_version() -> int:
    from delo.data.synthetic import GENERATOR_VERSION

    return GENERATOR_VERSION
