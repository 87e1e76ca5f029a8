"""Frozen linear probe: how much of the benchmark's evidence a backbone's pooled output carries per modality.

The probe reads ViLT's pooled output (the feature DeLo's heads see) on the synthetic benchmark's train split and
scores a multinomial logistic regression on its test split, over all classes of all sessions, three times:
with complete inputs, with the image only (the text replaced by the loader's dummy ``""``) and with the text
only (the dummy white image). Missing inputs are built by the real loader, exactly as a run builds them.

Ceilings of the multi-class world (docs/benchmark.md): the class evidence is in the image for 65 % of the
samples and in the text for 65 %, and both modalities always show the session, so one modality alone tops out
near 0.65 + 0.35 / 4 ≈ 74 % over the 20 classes, and complete inputs near 100 %.
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

FORMS = {"complete": COMPLETE, "image_only": TEXT_MISSING, "text_only": IMAGE_MISSING}
"""Probe form -> the missing code the loader applies (image only = the text is missing)."""


@torch.no_grad()
def pooled_features(vilt, backbone, samples: Sequence[Sample], missing: int, batch_size: int = 256) -> Tensor:
    """(N, d) pooled outputs of ``samples`` with every sample given missing code ``missing``."""
    forced = [dataclasses.replace(s, missing=missing) for s in samples]
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

    Deterministic: zero init, no sampling.
    """
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xtr, xte = (x_train - mean) / std, (x_test - mean) / std  # (N, d)
    classes = int(max(y_train.max(), y_test.max())) + 1
    weight = torch.zeros(xtr.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ weight + bias, y_train) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ weight + bias).argmax(-1) == y_test).float().mean())


def probe(vilt, backbone, train: Sequence[Sample], test: Sequence[Sample]) -> dict[str, float]:
    """{complete, image_only, text_only}: test accuracy in percent of a probe fitted on ``train`` per form."""
    y_train = torch.tensor([int(s.label) for s in train])
    y_test = torch.tensor([int(s.label) for s in test])
    scores = {}
    for form, code in FORMS.items():
        x_train = pooled_features(vilt, backbone, train, code)
        x_test = pooled_features(vilt, backbone, test, code)
        scores[form] = round(100.0 * fit_and_score(x_train, y_train, x_test, y_test), 2)
    return scores


def benchmark_splits(cfg: RunConfig, max_test: int | None = None) -> tuple[list[Sample], list[Sample]]:
    """All sessions' train and test samples of the (multi-class) benchmark of ``cfg``, generated if needed.

    ``max_test`` keeps every k-th test sample (a deterministic subset, for tests).
    """
    from delo.data.benchmark import prepare_data, read_dataset  # the data package is heavy to import

    if cfg.data.name != "synthetic" or cfg.data.synthetic.kind != "mc":
        raise ValueError(
            "the linear probe reads the multi-class synthetic benchmark (data.synthetic.kind=mc)"
        )
    prepare_data(cfg)
    ds = read_dataset(cfg)
    tasks = range(len(ds.task_classes))
    train = [s for t in tasks for s in ds.samples[(t, "train")]]
    test = [s for t in tasks for s in ds.samples[(t, "test")]]
    if max_test is not None and len(test) > max_test:
        step = -(-len(test) // max_test)
        test = test[::step]
    return train, test


def probe_folder(folder: str | Path, threads: int | None = None) -> dict:
    """The probe of the backbone in ``folder`` on the default profile's world (all 6,000 test samples):
    ``{"scores": {complete, image_only, text_only}, "split": description}``, as the backbone card records it."""
    from delo.config import DEFAULT_PROFILE, load_config
    from delo.vilt.backbone import load_backbone

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(DEFAULT_PROFILE, [f"model.backbone={Path(folder).resolve()}"])
    backbone = load_backbone(cfg.model)
    train, test = benchmark_splits(cfg)
    world = cfg.data.synthetic
    split = (
        f"benchmark train split ({len(train)}) -> test split ({len(test)}), world kind {world.kind} seed "
        f"{world.seed}, all {int(max(s.label for s in test)) + 1} classes"
    )
    return {"scores": probe(backbone.vilt, backbone, train, test), "split": split}
