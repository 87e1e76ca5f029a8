"""MM-IMDb in the layout of the public missing-modality code, or the original archive (protocol.md §2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from delo.data.records import DataError, RawRecord, read_json

RAW_LAYOUT = """expected the MM-IMDb raw layout:
  <root>/images/<id>.jpeg
  <root>/labels/<id>.json        (reads "plot": [strings] and "genres": [strings])
  <root>/split.json              {"train": [ids], "dev": [ids], "test": [ids]}
or the original archive: <root>/split.json with <id>.jpeg and <id>.json side by side in <root>/dataset/ or <root>"""

_SPLIT_KEYS = {"train": ("train",), "val": ("dev", "val"), "test": ("test",)}


@dataclass
class MMIMDbRaw:
    records: list[RawRecord]
    skipped_no_text: int


def _folders(root: Path) -> tuple[Path, Path]:
    """(image folder, label folder) of whichever accepted layout ``root`` has."""
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return root / "images", root / "labels"
    if (root / "dataset").is_dir():
        return root / "dataset", root / "dataset"
    if any(p.suffix == ".json" and p.name != "split.json" for p in root.iterdir()):
        return root, root
    raise DataError(f"{root}: folders images/ and labels/ (or dataset/) not found; {RAW_LAYOUT}")


def _candidates(movie_id: str) -> list[str]:
    """7-digit ids as in split.json, 8-digit file names, or unpadded ids."""
    names = [movie_id]
    if movie_id.isdigit():
        bare = str(int(movie_id))
        names += [bare.zfill(7), bare.zfill(8), bare]
    return list(dict.fromkeys(names))


def _find(folder: Path, movie_id: str, suffix: str) -> Path | None:
    for name in _candidates(movie_id):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def canonical_id(movie_id: str) -> str:
    return str(int(movie_id)).zfill(7) if movie_id.isdigit() else movie_id


def read_split_ids(root: Path) -> dict[str, list[str]]:
    path = root / "split.json"
    if not path.is_file():
        raise DataError(f"{root}: split.json not found; {RAW_LAYOUT}")
    data = read_json(path, "split file")
    out = {}
    for split, keys in _SPLIT_KEYS.items():
        ids = next((data[k] for k in keys if isinstance(data, dict) and isinstance(data.get(k), list)), None)
        if ids is None:
            raise DataError(f"{path}: no list under {' or '.join(map(repr, keys))}; {RAW_LAYOUT}")
        if not ids:
            raise DataError(f"{path}: split {keys[0]!r} is empty")
        out[split] = [str(i) for i in ids]
    return out


def _plots(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [" ".join(str(p).split()) for p in items if str(p).strip()]


def read_mmimdb(root: Path, per_plot: bool = False) -> MMIMDbRaw:
    """One record per movie (plots joined with ". "), or one per plot; labels = the movie's genres."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found; {RAW_LAYOUT}")
    split_ids = read_split_ids(root)
    image_dir, label_dir = _folders(root)
    records, skipped = [], 0
    for split, ids in split_ids.items():
        for movie_id in ids:
            label_path = _find(label_dir, movie_id, ".json")
            if label_path is None:
                raise DataError(f"{label_dir / (movie_id + '.json')}: label file not found; {RAW_LAYOUT}")
            meta = read_json(label_path, "label file")
            if not isinstance(meta, dict):
                raise DataError(f"{label_path}: expected an object with 'plot' and 'genres'")
            plots = _plots(meta.get("plot"))
            genres = tuple(str(g) for g in meta.get("genres") or ())
            image = _find(image_dir, movie_id, ".jpeg") or image_dir / f"{movie_id}.jpeg"
            uid = canonical_id(movie_id)
            if not plots:
                skipped += 1
                continue
            if per_plot:
                records += [RawRecord(f"{uid}#{k}", image, p, split, genres) for k, p in enumerate(plots)]
            else:
                records.append(RawRecord(uid, image, ". ".join(plots), split, genres))
    return MMIMDbRaw(records, skipped)
