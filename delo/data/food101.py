"""UPMC-Food101 in the raw layout of the public missing-modality code (protocol.md §2)."""

from __future__ import annotations

import csv
import html
import re
from dataclasses import dataclass
from pathlib import Path

from delo.data.records import SPLITS, DataError, RawRecord, read_json

RAW_LAYOUT = """expected the UPMC-Food101 raw layout:
  <root>/images/train/<class>/<class>_<n>.jpg   (train and val images)
  <root>/images/test/<class>/<class>_<n>.jpg
  <root>/class_idx.json                         {class name: index}
  <root>/split.json                             {"train": [...], "val": [...], "test": [...]} of file names
  <root>/text.json  or  <root>/texts/train_titles.csv + <root>/texts/test_titles.csv"""

_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")


@dataclass
class Food101Raw:
    class_order: list[str]
    """Class names by class_idx index."""
    records: list[RawRecord]
    skipped_no_text: int


def layout_error(root: Path, missing: str) -> DataError:
    return DataError(f"{root}: {missing} not found; {RAW_LAYOUT}")


def clean_title(title: str) -> str:
    """Undo HTML entities and literal ``\\xNN`` UTF-8 byte escapes; collapse whitespace."""
    title = _ESCAPED_BYTES.sub(
        lambda m: bytes.fromhex(m.group(0).replace("\\x", "")).decode("utf-8", "replace"), title
    )
    return " ".join(html.unescape(title).split())


def read_class_idx(root: Path) -> list[str]:
    path = root / "class_idx.json"
    if not path.is_file():
        raise layout_error(root, "class_idx.json")
    data = read_json(path, "class index")
    if not isinstance(data, dict) or sorted(data.values()) != list(range(len(data))):
        raise DataError(f"{path}: expected {{class name: index}} with indices 0..n-1")
    return sorted(data, key=data.__getitem__)


def read_titles(root: Path) -> dict[str, str]:
    """Image file name -> title, from text.json or the two headerless title CSVs."""
    if (root / "text.json").is_file():
        data = read_json(root / "text.json", "text file")
        if not isinstance(data, dict):
            raise DataError(f"{root / 'text.json'}: expected {{image file name: title}}")
        return {str(k): clean_title(str(v)) for k, v in data.items()}
    titles: dict[str, str] = {}
    for split in ("train", "test"):
        path = root / "texts" / f"{split}_titles.csv"
        if not path.is_file():
            raise layout_error(root, f"text.json or texts/{split}_titles.csv")
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            for row in csv.reader(fh):
                if len(row) >= 2 and row[0] not in titles:
                    titles[row[0]] = clean_title(row[1])
    return titles


def read_food101(root: Path) -> Food101Raw:
    """Records of every split; label = class_idx[file name up to its last "_"], text = the title."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found; {RAW_LAYOUT}")
    for folder in ("images/train", "images/test"):
        if not (root / folder).is_dir():
            raise layout_error(root, f"folder {folder}/")
    class_order = read_class_idx(root)
    known = set(class_order)
    if not (root / "split.json").is_file():
        raise layout_error(root, "split.json")
    split_lists = read_json(root / "split.json", "split file")
    if not isinstance(split_lists, dict) or any(not isinstance(split_lists.get(s), list) for s in SPLITS):
        raise DataError(f"{root / 'split.json'}: expected lists under 'train', 'val' and 'test'")
    titles = read_titles(root)
    records, skipped = [], 0
    for split in SPLITS:
        if not split_lists[split]:
            raise DataError(f"{root / 'split.json'}: split {split!r} is empty")
        folder = root / "images" / ("test" if split == "test" else "train")
        for name in split_lists[split]:
            cls = name.rsplit("_", 1)[0]
            if cls not in known:
                raise DataError(f"{root / 'split.json'}: {name}: class {cls!r} is not in class_idx.json")
            title = titles.get(name, "")
            if not title:
                skipped += 1
                continue
            records.append(RawRecord(name, folder / cls / name, title, split, (cls,)))
    for split_dir in ("train", "test"):
        used = {r.labels[0] for r in records if (r.split == "test") == (split_dir == "test")}
        absent = sorted(c for c in used if not (root / "images" / split_dir / c).is_dir())
        if absent:
            raise layout_error(root, f"images/{split_dir}/<class>/ folders of classes {absent[:3]}")
    return Food101Raw(class_order, records, skipped)
