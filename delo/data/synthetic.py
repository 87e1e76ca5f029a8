"""Embedded synthetic benchmark (protocol.md §8) on disk: world v3 (delo.data.synthetic_world) written in the real
raw layouts (Food101 for ``mc``, MM-IMDb for ``ml``), so every run goes through the real readers; cached per
generator version and knobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from delo.config import SyntheticConfig
from delo.data.records import DataError, cache_root
from delo.data.synthetic_world import (  # noqa: F401  (re-exported: the readers and tools name them here)
    MC_CLASSES,
    MC_PER_SESSION,
    MC_SESSIONS,
    ML_GENRES,
    ML_PER_SESSION,
    ML_SESSIONS,
    PAIRS_VERSION,
    WORLD_WORDS,
    Knobs,
    decode_jpeg,
    draw_mc,
    draw_ml,
    jpeg_bytes,
    sample_captioned,
    sample_pairs,
)

GENERATOR_VERSION = 3
"""Version of the benchmark files: 2 grew the val and test splits; 3 is world v3 (fine colours, no session cue by
default; docs/benchmark.md)."""

# Split sizes (multi-class: per class; multi-label: movies per session), all times data.synthetic.scale.
# Train: 80 per class (320 a task) is what adaptation needs on the default budget (docs/benchmark.md, "Headroom").
# Test AP is a mean of per-task accuracies, so Var(AP) ~ p(1 - p) / N_test <= 0.25 / N_test (p = 0.5).
# mc: 20 kept classes x 300 = 6000 test samples -> SE <= 0.65 points; at eta 0.7 both, 30 % are complete
# (1800 -> SE <= 1.18) and 35 % each text- or image-missing (2100 -> <= 1.09). Val: 3000 -> <= 0.91.
# ml: 4 x 600 = 2400 test movies -> <= 1.02 by the same bound (macro-F1 is not a proportion; this is a guide).
MC_SIZES = {"train": 80, "val": 150, "test": 300}
ML_SIZES = {"train": 150, "val": 300, "test": 600}


# ----------------------------------------------------------------------------------------------------------
# The benchmark on disk


def variant_dir(cfg: SyntheticConfig, root: Path | None = None) -> Path:
    """``<kind>-s<seed>-v<version>-<8 hex>``: the hex digest covers every generator parameter, so worlds with
    different knobs live side by side (concurrent sweeps, grids over a knob) and a folder is never rebuilt."""
    digest = hashlib.sha256(json.dumps(generator_params(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return (root or cache_root()) / "synthetic" / f"{cfg.kind}-s{cfg.seed}-v{GENERATOR_VERSION}-{digest}"


def generator_params(cfg: SyntheticConfig) -> dict[str, Any]:
    """Everything the files depend on (generator.json records it with the content hash)."""
    return {
        "kind": cfg.kind,
        "seed": cfg.seed,
        "version": GENERATOR_VERSION,
        "dominant": cfg.dominant,
        "session_cue": cfg.session_cue,
        "scale": cfg.scale,
    }


def _count(base: int, scale: float) -> int:
    return max(1, round(base * scale))


class _Writer:
    """Writes JPEGs and accumulates the content hash over decoded pixels, texts and labels."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.digest = hashlib.sha256()

    def image(self, relative: str, pixels: np.ndarray) -> None:
        data = jpeg_bytes(pixels)
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.digest.update(relative.encode())
        self.digest.update(np.asarray(decode_jpeg(data)).tobytes())

    def record(self, *parts: Any) -> None:
        self.digest.update(json.dumps(parts).encode())


def write_mc(
    folder: Path, rng: np.random.Generator, knobs: Knobs, scale: float
) -> tuple[str, dict[str, int]]:
    """Food101 raw layout; returns the content hash and the split sizes (unused class included)."""
    out = _Writer(folder)
    sizes = {split: _count(n, scale) for split, n in MC_SIZES.items()}
    split_lists: dict[str, list[str]] = {s: [] for s in sizes}
    titles: dict[str, list[str]] = {"train": [], "test": []}
    in_session = MC_SESSIONS * MC_PER_SESSION
    for c, cls in enumerate(MC_CLASSES):
        n = 0
        for split, count in sizes.items():
            folder_split = "test" if split == "test" else "train"
            for _ in range(count):
                session = c // MC_PER_SESSION if c < in_session else int(rng.integers(MC_SESSIONS))
                pixels, title = draw_mc(rng, c, session, knobs)
                name = f"{cls}_{n}.jpg"
                n += 1
                out.image(f"images/{folder_split}/{cls}/{name}", pixels)
                out.record(name, title, cls)
                split_lists[split].append(name)
                titles[folder_split].append(f'{name},"{title}",{cls}\n')
    (folder / "class_idx.json").write_text(json.dumps({cls: i for i, cls in enumerate(MC_CLASSES)}, indent=1))
    (folder / "split.json").write_text(json.dumps(split_lists))
    (folder / "texts").mkdir()
    for split, rows in titles.items():
        (folder / "texts" / f"{split}_titles.csv").write_text("".join(rows))
    return out.digest.hexdigest(), {s: len(v) for s, v in split_lists.items()}


def _ml_design(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Genre lists of the 4 sessions x n movies, with strictly decreasing genre frequencies by construction.

    Session primaries: b + d + r, b, b - d of n = 3b + r. Co-occurring genres come only from lower indices
    (earlier, more frequent sessions or the same session): genre j of session s gets g * (3 - s) + e * (11 - j)
    of them with g = 2d + r + 1, so every genre outnumbers the next one (across a session boundary by at least
    one) and the ``rarest`` rule recovers each movie's session. Each movie has at most 2 co-occurring kept
    genres, and at most 4 genres in all (one glyph per quadrant cell).
    """
    b, r = divmod(n, 3)
    d = max(1, round(0.01 * n))
    g, e = 2 * d + r + 1, int(0.03 * n)
    if b - d < 3:
        raise DataError(f"synthetic ml: {n} movies per session are too few; raise data.synthetic.scale")
    movies: list[list[int]] = []
    for s in range(ML_SESSIONS):
        counts = (b + d + r, b, b - d)
        movies += [[ML_PER_SESSION * s + i] for i, c in enumerate(counts) for _ in range(c)]
    last = ML_SESSIONS * ML_PER_SESSION - 1
    for j in range(last - 1, -1, -1):
        need = g * (ML_SESSIONS - 1 - j // ML_PER_SESSION) + e * (last - j)
        eligible = [m for m in movies if m[0] > j and len(m) < 3]
        if len(eligible) < need:
            raise DataError(f"synthetic ml: too few movies (n={n} per session) for the co-occurrence design")
        for i in rng.permutation(len(eligible))[:need]:
            eligible[i].append(j)
    # the two dropped genres stay rarer than every kept one, counting the 3 movies with only them (write_ml)
    rare_budget = max(0, (b - d) // 2 - 2)
    for genre, count in ((last + 1, rare_budget), (last + 2, rare_budget // 2)):
        room = [m for m in movies if len(m) < 4]  # one glyph per quadrant cell: at most 4 genres a movie
        for i in rng.permutation(len(room))[:count]:
            room[i].append(genre)
    return movies


def write_ml(
    folder: Path, rng: np.random.Generator, knobs: Knobs, scale: float
) -> tuple[str, dict[str, int]]:
    """MM-IMDb raw layout plus sessions.json; returns the content hash and the split sizes (kept movies)."""
    out = _Writer(folder)
    sizes = {split: _count(n, scale) for split, n in ML_SIZES.items()}
    per_session = sum(sizes.values())
    design = _ml_design(rng, per_session)
    # three movies with only a dropped (rare) genre, one per split: the reader drops and counts them
    extra = [[ML_SESSIONS * ML_PER_SESSION + g % 2] for g in range(3)]
    ids = (rng.choice(9_000_000, size=len(design) + len(extra), replace=False) + 1_000_000).tolist()
    split_lists: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for s in range(ML_SESSIONS + 1):
        if s < ML_SESSIONS:
            group = design[s * per_session : (s + 1) * per_session]
            group = [group[i] for i in rng.permutation(len(group))]
            splits = [split for split, count in sizes.items() for _ in range(count)]
        else:
            group, splits = extra, ["train", "val", "test"]
        for genres, split in zip(group, splits, strict=False):
            session = s if s < ML_SESSIONS else int(rng.integers(ML_SESSIONS))
            movie_id = f"{ids.pop():07d}"
            pixels, plots = draw_ml(rng, genres, session, knobs)
            names = [ML_GENRES[g] for g in rng.permutation(genres).tolist()]
            out.image(f"images/{movie_id}.jpeg", pixels)
            out.record(movie_id, plots, names)
            (folder / "labels" / f"{movie_id}.json").write_text(json.dumps({"plot": plots, "genres": names}))
            split_lists["dev" if split == "val" else split].append(movie_id)
    (folder / "split.json").write_text(json.dumps(split_lists))
    sessions = [list(ML_GENRES[ML_PER_SESSION * s : ML_PER_SESSION * (s + 1)]) for s in range(ML_SESSIONS)]
    (folder / "sessions.json").write_text(json.dumps({"sessions": sessions, "assign": "rarest"}, indent=1))
    return out.digest.hexdigest(), {s: ML_SESSIONS * c for s, c in sizes.items()}


def _read_generator_json(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "generator.json").read_text())
    except (OSError, ValueError):
        return None


def _matches(meta: dict[str, Any] | None, params: dict[str, Any]) -> bool:
    return meta is not None and all(meta.get(k) == v for k, v in params.items()) and "content_hash" in meta


def generate(cfg: SyntheticConfig, folder: Path) -> dict[str, Any]:
    """Write one variant into ``folder`` (which must not exist); returns its generator.json."""
    start = time.perf_counter()
    folder.mkdir(parents=True)
    rng = np.random.default_rng([cfg.seed, GENERATOR_VERSION])
    knobs = Knobs(cfg.dominant, cfg.session_cue)
    writer = write_mc if cfg.kind == "mc" else write_ml
    content_hash, sizes = writer(folder, rng, knobs, cfg.scale)
    meta = {
        **generator_params(cfg),
        "content_hash": content_hash,
        "sizes": sizes,
        "seconds": round(time.perf_counter() - start, 3),
    }
    (folder / "generator.json").write_text(json.dumps(meta, indent=1))
    return meta


def ensure_synthetic(cfg: SyntheticConfig, root: Path | None = None) -> Path:
    """Driver side: the variant's folder, generated when absent (or when a damaged one lacks generator.json).

    Built in a temp sibling folder and renamed into place under a file lock, so readers never see half a set.
    """
    folder = variant_dir(cfg, root)
    folder.parent.mkdir(parents=True, exist_ok=True)
    params = generator_params(cfg)
    with FileLock(str(folder) + ".lock"):
        meta = _read_generator_json(folder)
        if _matches(meta, params):
            return folder
        if folder.exists():  # cut short, edited or damaged: rebuilt, and said so
            print(
                f"warning: {folder}: damaged synthetic set (no valid generator.json); rebuilding it",
                file=sys.stderr,
            )
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            generate(cfg, tmp)
            if folder.exists():
                old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
                os.rename(folder, old)
                os.rename(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def check_synthetic(cfg: SyntheticConfig, root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Trial side: the variant's folder and generator.json; DataError when absent, damaged or built with other
    knobs."""
    folder = variant_dir(cfg, root)
    meta = _read_generator_json(folder)
    if meta is None and (folder / "generator.json").exists():
        raise DataError(
            f"{folder / 'generator.json'}: damaged file (not readable JSON). The launchers rebuild the set when "
            f"they start (python launch/train.py or launch/sweep.py); or delete {folder}"
        )
    if meta is None:
        raise DataError(f"{folder}: synthetic benchmark not found; run prepare_data(cfg) on the driver first")
    params = generator_params(cfg)
    if not _matches(meta, params):
        diff = {k: (meta.get(k), v) for k, v in params.items() if meta.get(k) != v}
        raise DataError(
            f"{folder}: synthetic benchmark was built with other parameters {diff} (found, wanted); "
            "run prepare_data(cfg) on the driver first"
        )
    return folder, meta
