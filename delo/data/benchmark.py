"""Entry points: ``prepare_data`` on the driver (writes), ``load_benchmark`` in trials (reads and verifies).

Both read the dataset the same way: the reader for the layout, then sessions, then per (task, split) samples
sorted by id. Missing tables cover every session of the dataset, so ``data.num_tasks`` only slices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from delo.config import DataConfig, MissingConfig, RunConfig
from delo.data import manifest, sessions, synthetic
from delo.data.food101 import read_food101
from delo.data.missing import MissingSpec, ensure_table, load_table
from delo.data.mmimdb import read_mmimdb
from delo.data.records import SPLITS, Benchmark, DataError, RawRecord, Sample, SessionPlan, stable_digest

# (classes per session, sessions) of the built-in multi-class orders: consecutive blocks of class_idx.json
_BLOCKS = {
    "food101": sessions.FOOD101_BLOCKS,
    "synthetic-mc": (synthetic.MC_PER_SESSION, synthetic.MC_SESSIONS),
}


@dataclass
class _Dataset:
    """The whole dataset (every session), before missing codes."""

    key: str
    name: str
    multilabel: bool
    label_names: list[str]
    task_classes: list[list[int]]
    samples: dict[tuple[int, str], list[Sample]]
    report: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    def session_uids(self, split: str) -> list[list[str]]:
        return [[s.uid for s in self.samples[(t, split)]] for t in range(len(self.task_classes))]


def missing_settings(data: DataConfig) -> dict[str, MissingConfig]:
    """Missing setting per split: val and test default to the train setting."""
    return {
        "train": data.missing,
        "val": data.val_missing or data.missing,
        "test": data.test_missing or data.missing,
    }


def _resolve_layout(data: DataConfig, root: Path) -> str:
    if data.layout != "auto":
        return data.layout
    return "manifest" if manifest.find_manifest(root, data.name) else "raw"


def _plan(
    records: list[RawRecord], default: SessionPlan, sessions_path: Path | None, check: bool
) -> SessionPlan:
    if sessions_path is None:
        return default
    plan = sessions.read_sessions_file(sessions_path)
    if check:
        sessions.check_known(plan, {n for r in records for n in r.labels}, str(sessions_path))
    return plan


def _by_task_split(
    samples: list[Sample], splits: dict[str, str], num_tasks: int
) -> dict[tuple[int, str], list[Sample]]:
    """Samples per (task, split), each list sorted by id; ``splits`` maps uid -> split."""
    grouped: dict[tuple[int, str], list[Sample]] = {(t, s): [] for t in range(num_tasks) for s in SPLITS}
    for sample in samples:
        grouped[(sample.task, splits[sample.uid])].append(sample)
    for rows in grouped.values():
        rows.sort(key=lambda s: s.uid)
    return grouped


def _from_records(
    key: str,
    name: str,
    records: list[RawRecord],
    plan: SessionPlan,
    multilabel: bool,
    assign: str,
    report: dict[str, Any],
) -> _Dataset:
    if multilabel:
        placed, dropped = sessions.place_multilabel(records, plan, assign)
        report["dropped_no_kept_label"] = dropped
        report["assign"] = assign
    else:
        placed, dropped = sessions.place_multiclass(records, plan)
        report["dropped_unused_class"] = dropped
    splits = {r.uid: r.split for r in records}
    grouped = _by_task_split(placed, splits, len(plan.sessions))
    return _Dataset(key, name, multilabel, plan.label_names, plan.task_classes, grouped, report)


def _assign_rule(data: DataConfig, plan: SessionPlan) -> str:
    """An explicitly configured data.assign wins over the sessions file's, which wins over the default."""
    return data.assign if "assign" in data.model_fields_set else plan.assign


def _key_suffix(
    multilabel: bool, per_plot: bool, assign: str, sessions_path: Path | None, builtin: bool
) -> str:
    out = ""
    if multilabel and per_plot:
        out += "-perplot"
    if multilabel and assign != "rarest":
        out += f"-{assign}"
    if sessions_path is not None and not builtin:
        out += "-sess" + hashlib.sha256(sessions_path.read_bytes()).hexdigest()[:8]
    return out


def _read_synthetic(data: DataConfig, folder: Path, meta: dict[str, Any]) -> _Dataset:
    syn = data.synthetic
    key = f"synthetic-{folder.name}"  # one world per folder: its uids (and so its missing tables) are its own
    report: dict[str, Any] = {"name": f"synthetic-{syn.kind}", "root": str(folder), "layout": "raw"}
    sessions_path = sessions.find_sessions_file(folder, data.sessions_file)
    if syn.kind == "mc":
        raw = read_food101(folder)
        report["skipped_no_text"] = raw.skipped_no_text
        default = sessions.blocks(raw.class_order, *_BLOCKS["synthetic-mc"])
        plan = _plan(raw.records, default, sessions_path, check=True)
        key += _key_suffix(False, False, "", sessions_path, builtin=False)
        ds = _from_records(key, "synthetic-mc", raw.records, plan, False, "", report)
    else:
        mm = read_mmimdb(folder, data.mmimdb_per_plot)
        report["skipped_no_text"] = mm.skipped_no_text
        plan = _plan(mm.records, SessionPlan(()), sessions_path, check=True)
        assign = _assign_rule(data, plan)
        builtin = data.sessions_file is None
        key += _key_suffix(True, data.mmimdb_per_plot, assign, sessions_path, builtin)
        ds = _from_records(key, "synthetic-ml", mm.records, plan, True, assign, report)
    ds.content_hash = meta["content_hash"]
    return ds


def _read_real(data: DataConfig) -> _Dataset:
    root = Path(data.root).expanduser()  # type: ignore[arg-type]  # validated: set for real datasets
    if not root.is_dir():
        raise DataError(f"data.root: {root} is not a folder")
    layout = _resolve_layout(data, root)
    multilabel = data.name == "mmimdb"
    report: dict[str, Any] = {"name": data.name, "root": str(root), "layout": layout}
    if layout == "manifest":
        if data.sessions_file:
            raise DataError(
                "data.sessions_file cannot be combined with the CMML manifest layout (it fixes sessions)"
            )
        path = manifest.find_manifest(root, data.name)
        if path is None:
            raise DataError(f"{root}: manifest not found; {manifest.manifest_layout(data.name)}")
        man = manifest.read_manifest(path, data.name)
        report["dropped_task"] = man.dropped_task
        num_tasks, per_session = manifest.MANIFEST_SHAPE[data.name]
        task_classes = [list(range(t * per_session, (t + 1) * per_session)) for t in range(num_tasks)]
        grouped = _by_task_split(man.samples, man.splits, num_tasks)
        return _Dataset(
            f"{data.name}-cmml", data.name, multilabel, man.label_names, task_classes, grouped, report
        )
    try:
        sessions_path = sessions.find_sessions_file(root, data.sessions_file)
        if multilabel:
            mm = read_mmimdb(root, data.mmimdb_per_plot)
            records, report["skipped_no_text"] = mm.records, mm.skipped_no_text
            default = SessionPlan(sessions.MMIMDB_SESSIONS)
        else:
            raw = read_food101(root)
            records, report["skipped_no_text"] = raw.records, raw.skipped_no_text
            default = sessions.blocks(raw.class_order, *_BLOCKS["food101"])
    except DataError as exc:
        if data.layout == "auto":
            raise DataError(f"{exc}\nor {manifest.manifest_layout(data.name)}") from None
        raise
    plan = _plan(records, default, sessions_path, check=True)
    assign = _assign_rule(data, plan) if multilabel else ""
    key = data.name + _key_suffix(multilabel, data.mmimdb_per_plot, assign, sessions_path, builtin=False)
    return _from_records(key, data.name, records, plan, multilabel, assign, report)


def read_dataset(cfg: RunConfig) -> _Dataset:
    """The whole dataset of ``cfg`` (every session); synthetic data must already be generated."""
    data = cfg.data
    if data.name == "synthetic":
        folder, meta = synthetic.check_synthetic(data.synthetic)
        return _read_synthetic(data, folder, meta)
    return _read_real(data)


def prepare_data(cfg: RunConfig) -> None:
    """Driver: generate the synthetic set if needed and write every split's missing table (idempotent)."""
    if cfg.data.name == "synthetic":
        synthetic.ensure_synthetic(cfg.data.synthetic)
    ds = read_dataset(cfg)
    for split, setting in missing_settings(cfg.data).items():
        spec = MissingSpec(ds.key, split, setting.eta, setting.type, cfg.data.mask_seed)
        ensure_table(spec, ds.session_uids(split))


def load_benchmark(cfg: RunConfig) -> Benchmark:
    """Trials: read the data, load and verify the missing tables (never build them), keep the first T tasks."""
    ds = read_dataset(cfg)
    num_tasks = len(ds.task_classes) if cfg.data.num_tasks is None else cfg.data.num_tasks
    if num_tasks > len(ds.task_classes):
        raise DataError(f"data.num_tasks={num_tasks} but {ds.name} has {len(ds.task_classes)} sessions")
    task_classes = ds.task_classes[:num_tasks]
    num_labels = sum(len(c) for c in task_classes)
    samples: dict[tuple[int, str], list[Sample]] = {}
    tables = []
    for split, setting in missing_settings(cfg.data).items():
        spec = MissingSpec(ds.key, split, setting.eta, setting.type, cfg.data.mask_seed)
        codes = load_table(spec, ds.session_uids(split))
        tables.append(spec.filename)
        for t in range(num_tasks):
            rows = ds.samples[(t, split)]
            if not rows:
                raise DataError(f"{ds.report.get('root')}: task {t} has no {split} samples")
            samples[(t, split)] = [
                _finish(s, code, ds.multilabel, num_labels) for s, code in zip(rows, codes[t], strict=False)
            ]
    lines = [
        f"{t}\t{split}\t{s.uid}\t{s.missing}\t{s.label}"
        for (t, split), rows in sorted(samples.items())
        for s in rows
    ]
    fingerprint = stable_digest(
        ds.key, ds.content_hash, hashlib.sha256("\n".join(lines).encode()).hexdigest()
    )[:16]
    report = {
        **ds.report,
        "key": ds.key,
        "tables": tables,
        "sizes": {split: [len(samples[(t, split)]) for t in range(num_tasks)] for split in SPLITS},
    }
    return Benchmark(
        ds.name,
        ds.multilabel,
        task_classes,
        ds.label_names[:num_labels],
        fingerprint,
        samples,
        report,
    )


def _finish(sample: Sample, code: int, multilabel: bool, num_labels: int) -> Sample:
    if not multilabel:
        return replace(sample, missing=code)
    label = tuple(i for i in sample.label if i < num_labels)  # type: ignore[union-attr]
    return replace(sample, missing=code, label=label, num_labels=num_labels)
