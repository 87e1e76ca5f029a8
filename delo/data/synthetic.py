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
import io
import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image

GENERATOR_VERSION = 1
IMAGE_SIZE = 64

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
            for cell, r in zip(cells, radii)
        ]
    for motif, (cx, cy), r in zip(motifs, centres, radii):
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
    rng = np.random.default_rng([seed, GENERATOR_VERSION, 101])
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
