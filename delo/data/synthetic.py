# Over 450 lines: the world (cues, drawing) and its two on-disk layouts are one generator, versioned together.
"""Embedded synthetic benchmark (protocol.md §8): a tiny world with complementary image and text cues.

Every class (multi-class world ``mc``) or genre (multi-label world ``ml``) has an image motif, a glyph shape in
a colour, and a text keyword. Per sample and per class or positive label the evidence is put in the image only,
the text only, or both; where it is absent the image shows a grey neutral glyph and the text has no keyword.
Every sample of session s also carries session cues in both modalities: a pale background hue and 2-4 of the
session's topic words among shared filler words.

The benchmark is written to disk in the real raw layouts (Food101 for ``mc``, MM-IMDb for ``ml``), so every run
goes through the real readers. :func:`sample_pairs` draws matched pairs from the whole world for pretraining the
``tiny`` backbone and its vocabulary (:data:`WORLD_WORDS`).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import itertools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from PIL import Image

from delo.config import SyntheticConfig
from delo.data.records import DataError, cache_root

GENERATOR_VERSION = 2
"""Version of the benchmark files: 2 grew the val and test splits (see MC_SIZES)."""
PAIRS_VERSION = 1
"""Seeds :func:`sample_pairs`, independent of GENERATOR_VERSION: the shipped ``tiny`` was pretrained on these
pairs (its card names version 1), and the drawing rules have not changed since."""
IMAGE_SIZE = 64

# Split sizes (multi-class: per class; multi-label: movies per session), all times data.synthetic.scale.
# Test AP is a mean of per-task accuracies, so Var(AP) ~ p(1 - p) / N_test <= 0.25 / N_test (p = 0.5).
# mc: 20 kept classes x 300 = 6000 test samples -> SE <= 0.65 points; at eta 0.7 both, 30 % are complete
# (1800 -> SE <= 1.18) and 35 % each text- or image-missing (2100 -> <= 1.09). Val: 3000 -> <= 0.91.
# ml: 4 x 600 = 2400 test movies -> <= 1.02 by the same bound (macro-F1 is not a proportion; this is a guide).
# Train sizes are unchanged from version 1.
MC_SIZES = {"train": 40, "val": 150, "test": 300}
ML_SIZES = {"train": 150, "val": 300, "test": 600}

# Multi-class world, in class_idx order (deliberately not alphabetical): blocks of 4 form the 5 sessions and
# the last class (index 20) lies outside every session, so the reader's dropping of unused classes is exercised.
MC_KEYWORDS: tuple[str, ...] = (
    "mango", "fennel", "quince", "basil",
    "okra", "saffron", "apricot", "lentil",
    "tamarind", "cocoa", "radish", "hazel",
    "jicama", "durian", "nutmeg", "endive",
    "kumquat", "papaya", "ginger", "iceberg",
    "umeboshi",
)  # fmt: skip
MC_CLASSES: tuple[str, ...] = tuple(f"{word}_plate" for word in MC_KEYWORDS)
MC_PER_SESSION = 4
MC_SESSIONS = 5
MC_TOPICS: tuple[tuple[str, ...], ...] = (
    ("harbor", "lantern", "velvet", "meadow", "copper"),
    ("glacier", "saddle", "orchid", "pebble", "violin"),
    ("desert", "kettle", "marble", "falcon", "tulip"),
    ("canyon", "ribbon", "pepper", "walrus", "candle"),
    ("forest", "anchor", "silver", "parrot", "thimble"),
)

# Multi-label world: 14 genres in strictly decreasing frequency; the first 12 form 4 sessions of 3 and the two
# rarest are dropped by the reader (they are absent from sessions.json).
ML_KEYWORDS: tuple[str, ...] = (
    "duel", "laughter", "kiss",
    "suspect", "heist", "explosion",
    "voyage", "ghost", "archive",
    "riddle", "starship", "wizard",
    "puppy", "throne",
)  # fmt: skip
ML_GENRES: tuple[str, ...] = tuple(word.capitalize() for word in ML_KEYWORDS)
ML_PER_SESSION = 3
ML_SESSIONS = 4
ML_TOPICS: tuple[tuple[str, ...], ...] = (
    ("village", "winter", "letter", "brother", "river"),
    ("airport", "casino", "tunnel", "rooftop", "signal"),
    ("island", "castle", "mirror", "diary", "comet"),
    ("circus", "jungle", "robot", "lighthouse", "violet"),
)

FILLER_WORDS: tuple[str, ...] = (
    "the", "a", "an", "of", "with", "and", "in", "on", "for", "from", "at", "by", "to", "is", "was", "very",
    "fresh", "old", "new", "big", "small", "warm", "cold", "simple", "classic", "little", "quiet", "bright",
    "one", "two", "day", "night", "home", "city", "friend", "story", "style", "recipe", "journey", "life",
)  # fmt: skip

WORLD_WORDS: tuple[str, ...] = tuple(
    sorted(
        {
            *MC_KEYWORDS,
            *(w for topic in MC_TOPICS for w in topic),
            *ML_KEYWORDS,
            *(w for topic in ML_TOPICS for w in topic),
            *FILLER_WORDS,
        }
    )
)
"""Every word any synthetic text can contain (lowercase). The only other symbol is ".", which the MM-IMDb
reader puts between plots when it joins them with ". "."""

SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond")
_GLYPH_HUES = tuple(i / 10 for i in range(10))  # ten well-separated saturated hues
_NEUTRAL_RGB = (128.0, 128.0, 128.0)
_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


@dataclass(frozen=True)
class Knobs:
    """Generator knobs (data.synthetic): dominant > 0 shifts evidence toward text, < 0 toward the image."""

    dominant: float = 0.0
    session_overlap: float = 0.0

    def evidence_probs(self) -> tuple[float, float, float]:
        """P(image only), P(text only), P(both)."""
        return 0.35 - 0.35 * self.dominant, 0.35 + 0.35 * self.dominant, 0.30


@dataclass(frozen=True)
class Motif:
    shape: str
    rgb: tuple[float, float, float]


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return 255.0 * r, 255.0 * g, 255.0 * b


def mc_motif(c: int) -> Motif:
    """Class c: hue c % 10 (so the 4 classes of a session differ in colour); (hue, shape) unique per class."""
    return Motif(SHAPES[(c + c // 10) % len(SHAPES)], _hsv(_GLYPH_HUES[c % 10], 0.9, 0.9))


def ml_motif(g: int) -> Motif:
    """Genre g: hue 3g % 10 (the first 10 genres all differ in colour); (hue, shape) unique per genre."""
    return Motif(SHAPES[(g + g // 10) % len(SHAPES)], _hsv(_GLYPH_HUES[(3 * g) % 10], 0.9, 0.9))


def session_hue(session: int, num_sessions: int) -> float:
    return session / num_sessions


# ----------------------------------------------------------------------------------------------------------
# Drawing


def _shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = _XX - cx, _YY - cy
    if shape == "disk":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if shape == "triangle":
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "cross":
        thin = r / 3
        return ((np.abs(dx) <= thin) & (np.abs(dy) <= r)) | ((np.abs(dy) <= thin) & (np.abs(dx) <= r))
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    raise ValueError(f"unknown shape {shape!r}")


def _pick_session(rng: np.random.Generator, session: int, num_sessions: int, overlap: float) -> int:
    """The session whose cue is shown: a random other session with probability overlap / 2."""
    if overlap > 0 and num_sessions > 1 and rng.random() < overlap / 2:
        return int((session + rng.integers(1, num_sessions)) % num_sessions)
    return session


def draw_image(
    rng: np.random.Generator,
    session: int,
    num_sessions: int,
    motifs: list[Motif | None],
    overlap: float,
) -> np.ndarray:
    """(64, 64, 3) uint8: pale session background, one glyph per entry (None = neutral grey glyph)."""
    hue = session_hue(_pick_session(rng, session, num_sessions, overlap), num_sessions)
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    img[:] = _hsv(hue + rng.uniform(-0.02, 0.02), 0.3, 0.93)
    if len(motifs) == 1:  # one glyph anywhere
        r = rng.uniform(11, 16)
        centres = [(rng.uniform(r, IMAGE_SIZE - r), rng.uniform(r, IMAGE_SIZE - r))]
        radii = [r]
    else:  # one glyph per quadrant cell
        cells = rng.permutation(4)[: len(motifs)]
        radii = list(rng.uniform(8, 12, size=len(motifs)))
        centres = [
            (32 * (cell % 2) + rng.uniform(r, 32 - r), 32 * (cell // 2) + rng.uniform(r, 32 - r))
            for cell, r in zip(cells, radii, strict=False)
        ]
    for motif, (cx, cy), r in zip(motifs, centres, radii, strict=False):
        if motif is None:
            shape, rgb = SHAPES[rng.integers(len(SHAPES))], _NEUTRAL_RGB
        else:
            shape, rgb = motif.shape, motif.rgb
        img[_shape_mask(shape, cx, cy, r)] = np.asarray(rgb, np.float32) + rng.uniform(-12, 12, size=3)
    img += rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def draw_words(
    rng: np.random.Generator,
    topics: tuple[tuple[str, ...], ...],
    session: int,
    keywords: list[str],
    overlap: float,
) -> list[str]:
    """8-24 words: 2-4 session topic words, the given keywords, filler words; shuffled."""
    n_topic = int(rng.integers(2, 5))
    chosen: list[str] = []
    for word_idx in rng.permutation(len(topics[session]))[:n_topic]:
        source = _pick_session(rng, session, len(topics), overlap)
        chosen.append(topics[source][word_idx])
    length = int(rng.integers(8, 25))
    n_fill = max(0, length - n_topic - len(keywords))
    fill = [FILLER_WORDS[i] for i in rng.integers(0, len(FILLER_WORDS), size=n_fill)]
    words = chosen + list(keywords) + fill
    return [words[i] for i in rng.permutation(len(words))]


def _evidence(rng: np.random.Generator, knobs: Knobs) -> tuple[bool, bool]:
    """(in image, in text) for one class or positive label."""
    p_image, p_text, _ = knobs.evidence_probs()
    u = rng.random()
    if u < p_image:
        return True, False
    if u < p_image + p_text:
        return False, True
    return True, True


def draw_mc(rng: np.random.Generator, c: int, session: int, knobs: Knobs) -> tuple[np.ndarray, str]:
    """One multi-class sample of class c shown with the cues of ``session``: (pixels, title)."""
    in_image, in_text = _evidence(rng, knobs)
    pixels = draw_image(rng, session, MC_SESSIONS, [mc_motif(c) if in_image else None], knobs.session_overlap)
    words = draw_words(rng, MC_TOPICS, session, [MC_KEYWORDS[c]] if in_text else [], knobs.session_overlap)
    return pixels, " ".join(words)


def draw_ml(
    rng: np.random.Generator, genres: list[int], session: int, knobs: Knobs
) -> tuple[np.ndarray, list[str]]:
    """One multi-label sample with the given genres and the cues of ``session``: (pixels, 1-3 plots)."""
    motifs: list[Motif | None] = []
    keywords: list[str] = []
    for g in genres:
        in_image, in_text = _evidence(rng, knobs)
        motifs.append(ml_motif(g) if in_image else None)
        if in_text:
            keywords.append(ML_KEYWORDS[g])
    pixels = draw_image(rng, session, ML_SESSIONS, motifs, knobs.session_overlap)
    words = draw_words(rng, ML_TOPICS, session, keywords, knobs.session_overlap)
    n_plots = int(rng.integers(1, 4))
    cuts = sorted(rng.choice(np.arange(1, len(words)), size=n_plots - 1, replace=False).tolist())
    bounds = [0, *cuts, len(words)]
    plots = [" ".join(words[a:b]) for a, b in itertools.pairwise(bounds)]
    return pixels, plots


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


def _random_ml_genres(rng: np.random.Generator, session: int) -> list[int]:
    """A primary genre of the session plus 0-2 co-occurring genres of lower index (more frequent)."""
    primary = ML_PER_SESSION * session + int(rng.integers(ML_PER_SESSION))
    n_extra = min(primary, int(rng.integers(0, 3)))
    extra = rng.permutation(primary)[:n_extra].tolist() if n_extra else []
    return [primary, *extra]


# ----------------------------------------------------------------------------------------------------------
# Pretraining pairs


def sample_pairs(seed: int, n: int) -> list[tuple[Image.Image, str]]:
    """n matched, complete (image, text) pairs from the whole synthetic world, deterministic by ``seed``.

    Half the pairs come from the multi-class world (all 21 classes, including the unused one) and half from the
    multi-label world (all 4 sessions, co-occurring and rare genres included), with the benchmark's cue rules
    and default knobs. Images are 64x64 RGB after a JPEG round trip, like the benchmark's files; multi-label
    texts are their plots joined with ". ", as the reader does. Nothing is read from or written to disk.
    """
    rng = np.random.default_rng([seed, PAIRS_VERSION, 101])
    knobs = Knobs()
    pairs: list[tuple[Image.Image, str]] = []
    for i in range(n):
        if i % 2 == 0:
            c = int(rng.integers(len(MC_CLASSES)))
            session = (
                c // MC_PER_SESSION if c < MC_SESSIONS * MC_PER_SESSION else int(rng.integers(MC_SESSIONS))
            )
            pixels, text = draw_mc(rng, c, session, knobs)
        else:
            session = int(rng.integers(ML_SESSIONS))
            genres = _random_ml_genres(rng, session)
            if rng.random() < 0.1:  # the two rare genres occur as extra labels
                genres.append(len(ML_GENRES) - 1 - int(rng.integers(2)))
            pixels, plots = draw_ml(rng, genres, session, knobs)
            text = ". ".join(plots)
        pairs.append((decode_jpeg(jpeg_bytes(pixels)), text))
    return pairs


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
        "session_overlap": cfg.session_overlap,
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
    one) and the ``rarest`` rule recovers each movie's session. Each movie has at most 2 co-occurring genres.
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
        for i in rng.permutation(len(movies))[:count]:
            movies[i].append(genre)
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
    knobs = Knobs(cfg.dominant, cfg.session_overlap)
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
