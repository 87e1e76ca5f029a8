"""The CMML manifest layout of the public CMML code (protocol.md §2): one JSON list with tasks and splits.

Only these manifests reproduce the reference sessions exactly; their sessions are taken as they are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from delo.data.records import SPLITS, DataError, Sample, read_json
from delo.data.sessions import MMIMDB_SESSIONS

MANIFEST_NAMES = {"food101": "UPMC-Food101-CMML", "mmimdb": "MM-IMDB-CMML"}
# (sessions, labels per session) of the reference protocol
MANIFEST_SHAPE = {"food101": (10, 10), "mmimdb": (5, 4)}


def manifest_layout(dataset: str) -> str:
    name = MANIFEST_NAMES[dataset]
    return (
        f"expected the CMML manifest layout: <root>/{name}/{{images/, {name}.json}} (or <root> = that folder), "
        "the JSON a list of {task_id, split, image, text, label}"
    )


@dataclass
class ManifestData:
    samples: list[Sample]
    label_names: list[str]
    splits: dict[str, str]
    """Sample id -> split."""
    dropped_task: int
    """Records with task_id >= T."""


def find_manifest(root: Path, dataset: str) -> Path | None:
    name = MANIFEST_NAMES[dataset]
    for path in (root / name / f"{name}.json", root / f"{name}.json"):
        if path.is_file():
            return path
    return None


def _text(value: object) -> str:
    if isinstance(value, list):
        return ". ".join(" ".join(str(v).split()) for v in value if str(v).strip())
    return " ".join(str(value or "").split())


def _check_label(dataset: str, label: object, task: int, per_session: int, width: int) -> str | None:
    """None when ``label`` is valid for session ``task``, else the problem."""
    lo, hi = task * per_session, (task + 1) * per_session
    if dataset == "food101":
        if not isinstance(label, int) or isinstance(label, bool) or not lo <= label < hi:
            return f"label {label!r} outside [{lo}, {hi}) of task {task}"
        return None
    if not isinstance(label, list) or len(label) != width or any(v not in (0, 1) for v in label):
        return f"label must be a 0/1 list of length {width}"
    if not any(label[lo:hi]):
        return f"no positive in columns [{lo}, {hi}) owned by task {task}"
    return None


def _label_names(dataset: str, records: list[tuple[str, int | tuple[int, ...]]], width: int) -> list[str]:
    if dataset == "mmimdb":
        return [g for session in MMIMDB_SESSIONS for g in session]
    folders: dict[int, Counter[str]] = {}
    for image, label in records:
        parts = Path(image).parts
        if len(parts) >= 2 and isinstance(label, int):
            folders.setdefault(label, Counter())[parts[-2]] += 1
    names = [folders[i].most_common(1)[0][0] if i in folders else f"class_{i:03d}" for i in range(width)]
    return names if len(set(names)) == len(names) else [f"class_{i:03d}" for i in range(width)]


def read_manifest(path: Path, dataset: str) -> ManifestData:
    """Samples with the manifest's tasks and global labels, validated against the session layout."""
    sessions, per_session = MANIFEST_SHAPE[dataset]
    width = sessions * per_session
    images = path.parent / "images"
    if not images.is_dir():
        raise DataError(f"{images}: folder not found; {manifest_layout(dataset)}")
    data = read_json(path, "manifest")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of records; {manifest_layout(dataset)}")
    problems: list[str] = []
    samples: list[Sample] = []
    splits: dict[str, str] = {}
    uids: Counter[str] = Counter()
    dropped = 0
    for i, rec in enumerate(data):
        keys = {"task_id", "split", "image", "text", "label"}
        if not isinstance(rec, dict) or not keys <= set(rec):
            problems.append(f"record {i}: needs keys {sorted(keys)}")
            continue
        task, split = rec["task_id"], rec["split"]
        if not isinstance(task, int) or task < 0:
            problems.append(f"record {i}: task_id {task!r} is not a non-negative integer")
            continue
        if task >= sessions:
            dropped += 1
            continue
        if split not in SPLITS:
            problems.append(f"record {i}: split {split!r} not in {SPLITS}")
            continue
        bad = _check_label(dataset, rec["label"], task, per_session, width)
        if bad:
            problems.append(f"record {i}: {bad}")
            continue
        image = str(rec["image"])
        uids[image] += 1
        uid = image if uids[image] == 1 else f"{image}#{uids[image] - 1}"
        splits[uid] = split
        if dataset == "food101":
            samples.append(Sample(uid, images / image, _text(rec["text"]), int(rec["label"]), task))
        else:
            label = tuple(j for j, v in enumerate(rec["label"]) if v)
            samples.append(Sample(uid, images / image, _text(rec["text"]), label, task, num_labels=width))
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(f"{path}: {len(problems)} invalid records:\n  {shown}{more}")
    label_names = _label_names(dataset, [(s.uid, s.label) for s in samples], width)
    return ManifestData(samples, label_names, splits, dropped)
