"""The embedded world, version 3 (docs/benchmark.md): coarse concepts the backbone is pretrained on, and
fine-grained benchmark classes that pretraining blurs.

Primitives: ten coarse colours (hue ranges 0.1 wide) and grey, six glyph shapes, and their words; each coarse
colour has four fine shades (hue offsets -0.036, -0.012, +0.012, +0.036) and four fine colour words.

A pretraining pair (:func:`sample_captioned`) shows 1-3 glyphs anywhere on a pale background, each of any hue
within its coarse colour's range; each of its captions names every glyph as "<coarse colour> <shape>", the
glyphs in a random order. What the two modalities of a pretraining pair agree on is the coarse colour and the
shape of each glyph, and nothing finer: the fine words are in the vocabulary but in no pretraining caption.

A benchmark class (``mc``) is a **fine colour**: the image shows one glyph of the class's fine shade and the
text names it "<fine word> <shape>". A session holds two fine colours of one coarse colour and two of another:
session s uses coarse colour s (fine 0 and 1) and coarse colour s + 1 (fine 2 and 3) of five, a ring in which
every coarse colour is shared by two sessions. A genre (``ml``) is a fine colour too, one glyph per genre.

Where a modality does not carry a sample's class evidence its glyph is grey and its text says "grey".
Non-class content (background hue, filler and topic words, glyph shape, size and place, noise) comes from one
distribution for every session unless ``session_cue`` > 0 (then that share of the samples shows its session's
background hue and topic words, as world v2 did for every sample).
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
PAIRS_VERSION = 2
"""Seeds :func:`sample_captioned` (version 1 drew the v2 benchmark's own classes; 2 is the v3 pretraining
world)."""

PALETTE: dict[str, float] = {
    "red": 0.0, "orange": 0.1, "yellow": 0.2, "lime": 0.3, "green": 0.4,
    "cyan": 0.5, "blue": 0.6, "indigo": 0.7, "purple": 0.8, "pink": 0.9,
}  # fmt: skip
"""The ten coarse colours, name -> centre hue; a coarse colour covers hues within 0.05 of its centre."""
COARSE_HALF_WIDTH = 0.05
FINE_OFFSETS: tuple[float, ...] = (-0.036, -0.012, 0.012, 0.036)
"""Hue offsets of a coarse colour's four fine shades (0.024 apart, 8.6 degrees)."""
FINE_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet", "ruby", "cherry"),
    "orange": ("amber", "tangerine", "copper", "rust"),
    "yellow": ("lemon", "gold", "canary", "mustard"),
    "lime": ("chartreuse", "pear", "moss", "olive"),
    "green": ("emerald", "jade", "mint", "fern"),
    "cyan": ("teal", "turquoise", "aqua", "cerulean"),
    "blue": ("azure", "cobalt", "sapphire", "navy"),
    "indigo": ("iris", "ultramarine", "periwinkle", "denim"),
    "purple": ("violet", "plum", "lilac", "orchid"),
    "pink": ("magenta", "rose", "fuchsia", "blush"),
}
"""Fine word k of a coarse colour names its fine shade k in the benchmark; no pretraining caption uses it."""
GREY = "grey"
SHAPES: tuple[str, ...] = ("disk", "square", "triangle", "cross", "ring", "diamond")
FILLER_WORDS: tuple[str, ...] = (
    "the", "a", "an", "of", "with", "and", "in", "on", "for", "from", "at", "by", "to", "is", "was", "very",
    "fresh", "old", "new", "big", "small", "warm", "cold", "simple", "classic", "little", "quiet", "bright",
    "one", "two", "day", "night", "home", "city", "friend", "story", "style", "recipe", "journey", "life",
)  # fmt: skip
FINE: dict[str, tuple[str, int]] = {w: (c, k) for c, words in FINE_WORDS.items() for k, w in enumerate(words)}
"""Fine word -> (coarse colour, fine index)."""
WORLD_WORDS: tuple[str, ...] = tuple(sorted({*PALETTE, *FINE, GREY, *SHAPES, *FILLER_WORDS}))
"""Every word any synthetic text can contain (lowercase), the vocabulary of ``tiny``; every one but the fine
words occurs in pretraining. The only other symbol is ".", which the MM-IMDb reader puts between plots."""


def fine_hue(word: str) -> float:
    coarse, k = FINE[word]
    return PALETTE[coarse] + FINE_OFFSETS[k]


# ----------------------------------------------------------------------------------------------------------
# Classes, sessions, genres

MC_PER_SESSION = 4
MC_SESSIONS = 5
MC_COARSE: tuple[str, ...] = ("red", "yellow", "green", "blue", "purple")
"""The coarse colours of the multi-class classes (hues 0.2 apart), in session order."""


def _mc_classes() -> tuple[str, ...]:
    """Class words in class order: session s = coarse s fine 0, 1 and coarse s + 1 (mod 5) fine 2, 3, a ring in
    which every coarse colour is shared by two sessions; then one unused class, the coarse word "red" (the
    prototype hue), outside every session."""
    words: list[str] = []
    for s in range(MC_SESSIONS):
        first, second = MC_COARSE[s], MC_COARSE[(s + 1) % MC_SESSIONS]
        words += [FINE_WORDS[first][0], FINE_WORDS[first][1], FINE_WORDS[second][2], FINE_WORDS[second][3]]
    return (*words, "red")


MC_CLASSES: tuple[str, ...] = _mc_classes()
"""Class c's word (its fine colour); index MC_SESSIONS * 4 is outside every session, so the reader's dropping
of unused classes is exercised. Class names on disk are these words."""

ML_PER_SESSION = 3
ML_SESSIONS = 4
ML_WORDS: tuple[str, ...] = tuple(FINE_WORDS[tuple(PALETTE)[g // 2]][3 * (g % 2)] for g in range(14))
"""Genre g's fine colour: coarse g // 2, fine 0 or 3; genres in strictly decreasing frequency, the first 12 form
4 sessions of 3, the two rarest are dropped by the reader."""
ML_GENRES: tuple[str, ...] = tuple(word.capitalize() for word in ML_WORDS)


# ----------------------------------------------------------------------------------------------------------
# Knobs and the non-class content


@dataclass(frozen=True)
class Knobs:
    """Generator knobs (data.synthetic): dominant > 0 shifts evidence toward text, < 0 toward the image;
    session_cue is the share of samples that show their session's background hue and topic words."""

    dominant: float = 0.0
    session_cue: float = 0.0

    def evidence_probs(self) -> tuple[float, float, float]:
        """P(image only), P(text only), P(both)."""
        return 0.35 - 0.35 * self.dominant, 0.35 + 0.35 * self.dominant, 0.30


@dataclass(frozen=True)
class Context:
    """A sample's non-class content that the session may cue: background hue and 2-4 topic words."""

    hue: float
    topic: tuple[str, ...]


def topic_block(session: int, num_sessions: int) -> tuple[str, ...]:
    """Session s's topic words under session_cue: its own block of the filler words."""
    size = len(FILLER_WORDS) // num_sessions
    return FILLER_WORDS[session * size : (session + 1) * size]


def draw_context(rng: np.random.Generator, session: int, num_sessions: int, knobs: Knobs) -> Context:
    """One distribution for every session, unless this sample shows its session's cue (P = session_cue)."""
    n_topic = int(rng.integers(2, 5))
    if knobs.session_cue > 0 and rng.random() < knobs.session_cue:
        block = topic_block(session, num_sessions)
        hue = session / num_sessions + rng.uniform(-0.02, 0.02)
    else:
        block = FILLER_WORDS
        hue = rng.random()
    return Context(hue, tuple(block[i] for i in rng.integers(0, len(block), size=n_topic)))


def _evidence(rng: np.random.Generator, knobs: Knobs) -> tuple[bool, bool]:
    """(in image, in text) for one class or positive label."""
    p_image, p_text, _ = knobs.evidence_probs()
    u = rng.random()
    if u < p_image:
        return True, False
    if u < p_image + p_text:
        return False, True
    return True, True


# ----------------------------------------------------------------------------------------------------------
# Drawing


@dataclass(frozen=True)
class Glyph:
    """A glyph: shape, centre, radius and hue (None: grey)."""

    shape: str
    cx: float
    cy: float
    r: float
    hue: float | None


@dataclass(frozen=True)
class Spec:
    """What one sample shows before it is drawn: background hue, glyphs as shown, and the text's words."""

    hue: float
    glyphs: tuple[Glyph, ...]
    words: tuple[str, ...]


def hue_rgb(hue: float | None) -> np.ndarray:
    if hue is None:
        return np.array([128.0, 128.0, 128.0], np.float32)
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.9, 0.9)
    return np.array([255.0 * r, 255.0 * g, 255.0 * b], np.float32)


_ROWS, _COLS = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = _COLS - cx, _ROWS - cy
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


def background(hue: float) -> np.ndarray:
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.3, 0.93)
    img[:] = (255.0 * r, 255.0 * g, 255.0 * b)
    return img


def render(rng: np.random.Generator, img: np.ndarray, glyphs: list[Glyph]) -> np.ndarray:
    """Paint the glyphs (colour jitter of +-6 per channel: +-12 blurs the fine shades, 92 % of them told apart
    by their pixels after JPEG instead of all), add pixel noise; (64, 64, 3) uint8."""
    for glyph in glyphs:
        mask = shape_mask(glyph.shape, glyph.cx, glyph.cy, glyph.r)
        img[mask] = hue_rgb(glyph.hue) + rng.uniform(-6, 6, size=3)
    img += rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def free_glyphs(rng: np.random.Generator, hues: list[float | None]) -> list[Glyph]:
    """Glyphs anywhere on the canvas (radius 9-14), not overlapping (by rejection)."""
    glyphs: list[Glyph] = []
    for hue in hues:
        for _ in range(100):
            r = rng.uniform(9, 14)
            cx, cy = rng.uniform(r, IMAGE_SIZE - r, size=2)
            if all(np.hypot(cx - g.cx, cy - g.cy) > r + g.r + 2 for g in glyphs):
                break
        glyphs.append(Glyph(SHAPES[rng.integers(len(SHAPES))], float(cx), float(cy), float(r), hue))
    return glyphs


def cell_glyph(rng: np.random.Generator, cell: int, hue: float | None) -> Glyph:
    """A glyph in a quadrant cell (0-3, reading order): radius 8-12, jittered inside its cell."""
    r = rng.uniform(8, 12)
    cx = 32 * (cell % 2) + rng.uniform(r, 32 - r)
    cy = 32 * (cell // 2) + rng.uniform(r, 32 - r)
    return Glyph(SHAPES[rng.integers(len(SHAPES))], float(cx), float(cy), float(r), hue)


def compose_text(rng: np.random.Generator, description: list[str], topic: tuple[str, ...]) -> list[str]:
    """12-24 words: the description at a uniformly random place among the topic and filler words."""
    length = max(len(description) + len(topic), int(rng.integers(12, 25)))
    n_fill = length - len(description) - len(topic)
    fill = [FILLER_WORDS[i] for i in rng.integers(0, len(FILLER_WORDS), size=n_fill)]
    others = [*topic, *fill]
    others = [others[i] for i in rng.permutation(len(others))]
    n_before = int(rng.integers(0, len(others) + 1))
    return others[:n_before] + description + others[n_before:]


def grey(glyph: Glyph) -> Glyph:
    return Glyph(glyph.shape, glyph.cx, glyph.cy, glyph.r, None)


def mc_spec(
    rng: np.random.Generator, c: int, session: int, knobs: Knobs, num_sessions: int = MC_SESSIONS
) -> Spec:
    """Class c with the context of ``session``: one glyph of its fine shade anywhere and/or its fine word."""
    in_image, in_text = _evidence(rng, knobs)
    context = draw_context(rng, session, num_sessions, knobs)
    word = MC_CLASSES[c]
    hue = fine_hue(word) if word in FINE else PALETTE[word]
    (glyph,) = free_glyphs(rng, [hue])
    words = compose_text(rng, [word if in_text else GREY, glyph.shape], context.topic)
    return Spec(context.hue, (glyph if in_image else grey(glyph),), tuple(words))


def ml_spec(rng: np.random.Generator, genres: list[int], session: int, knobs: Knobs) -> Spec:
    """The given genres, one glyph each in random quadrant cells (reading order), with the context of
    ``session``; each genre's evidence is in the image, the text or both."""
    context = draw_context(rng, session, ML_SESSIONS, knobs)
    cells = sorted(rng.permutation(4)[: len(genres)].tolist())
    order = rng.permutation(len(genres))  # which genre sits in which (sorted) cell
    words = [ML_WORDS[genres[i]] for i in order]
    glyphs = [cell_glyph(rng, cell, fine_hue(w)) for cell, w in zip(cells, words, strict=True)]
    evidence = [_evidence(rng, knobs) for _ in glyphs]
    description = [
        t
        for g, w, (_, txt) in zip(glyphs, words, evidence, strict=True)
        for t in (w if txt else GREY, g.shape)
    ]
    text = compose_text(rng, description, context.topic)
    shown = tuple(g if img else grey(g) for g, (img, _) in zip(glyphs, evidence, strict=True))
    return Spec(context.hue, shown, tuple(text))


def draw(rng: np.random.Generator, spec: Spec) -> tuple[np.ndarray, str]:
    """(pixels, text) of a spec."""
    return render(rng, background(spec.hue), list(spec.glyphs)), " ".join(spec.words)


def draw_mc(rng: np.random.Generator, c: int, session: int, knobs: Knobs) -> tuple[np.ndarray, str]:
    """One sample of class c with the context of ``session``: (pixels, title)."""
    return draw(rng, mc_spec(rng, c, session, knobs))


def draw_ml(
    rng: np.random.Generator, genres: list[int], session: int, knobs: Knobs
) -> tuple[np.ndarray, list[str]]:
    """One multi-label sample: (pixels, its text cut into 1-3 plots)."""
    pixels, text = draw(rng, ml_spec(rng, genres, session, knobs))
    words = text.split()
    n_plots = int(rng.integers(1, 4))
    cuts = sorted(rng.choice(np.arange(1, len(words)), size=n_plots - 1, replace=False).tolist())
    bounds = [0, *cuts, len(words)]
    return pixels, [" ".join(words[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


# ----------------------------------------------------------------------------------------------------------
# The world's definition of a class, read from a spec


def coarse_of(hue: float) -> str:
    """The coarse colour whose range holds ``hue``."""
    return min(PALETTE, key=lambda c: abs((hue - PALETTE[c] + 0.5) % 1.0 - 0.5))


def fine_bin(hue: float) -> int:
    """The fine shade (0-3) nearest to ``hue`` within its coarse colour."""
    offset = (hue - PALETTE[coarse_of(hue)] + 0.5) % 1.0 - 0.5
    return int(np.argmin([abs(offset - o) for o in FINE_OFFSETS]))


def colour_words(words: tuple[str, ...]) -> list[str]:
    """The colour words of a text, in order (coarse, fine or grey)."""
    return [w for w in words if w in PALETTE or w in FINE or w == GREY]


# ----------------------------------------------------------------------------------------------------------
# Pretraining pairs

CAPTIONS_PER_IMAGE = 5
"""Captions per pretraining image, each naming its glyphs in its own order (COCO gives ViLT five)."""


def caption(rng: np.random.Generator, glyphs: tuple[Glyph, ...]) -> tuple[str, ...]:
    """Names each glyph ("<coarse colour> <shape>", whatever its shade), in a random order, among 2-4 topic and
    filler words."""
    told = [glyphs[i] for i in rng.permutation(len(glyphs))]
    description = [w for g in told for w in (GREY if g.hue is None else coarse_of(g.hue), g.shape)]
    topic = tuple(FILLER_WORDS[i] for i in rng.integers(0, len(FILLER_WORDS), size=int(rng.integers(2, 5))))
    return tuple(compose_text(rng, description, topic))


def pair_spec(rng: np.random.Generator, captions: int = 1) -> tuple[Spec, list[tuple[str, ...]]]:
    """A pretraining image, 1-3 glyphs of any coarse colour at any hue of its range (or grey) anywhere, and
    ``captions`` captions (the spec holds the first)."""
    names = [*PALETTE, GREY]
    hues: list[float | None] = []
    for i in rng.integers(0, len(names), size=int(rng.integers(1, 4))):
        offset = rng.uniform(-COARSE_HALF_WIDTH, COARSE_HALF_WIDTH)
        hues.append(None if names[i] == GREY else PALETTE[names[i]] + offset)
    glyphs = tuple(free_glyphs(rng, hues))
    texts = [caption(rng, glyphs) for _ in range(captions)]
    return Spec(float(rng.random()), glyphs, texts[0]), texts


def sample_captioned(
    seed: int, n: int, captions: int = CAPTIONS_PER_IMAGE
) -> list[tuple[Image.Image, list[str]]]:
    """n pretraining images with ``captions`` matched captions each, deterministic by ``seed``.

    Images are 64x64 RGB after a JPEG round trip, like the benchmark's files. Nothing is read from or written
    to disk. No caption contains a fine word (docs/benchmark.md, "Disjoint concepts").
    """
    rng = np.random.default_rng([seed, PAIRS_VERSION, 101])
    out: list[tuple[Image.Image, list[str]]] = []
    for _ in range(n):
        spec, texts = pair_spec(rng, captions)
        pixels, _ = draw(rng, spec)
        out.append((decode_jpeg(jpeg_bytes(pixels)), [" ".join(t) for t in texts]))
    return out


def sample_pairs(seed: int, n: int) -> list[tuple[Image.Image, str]]:
    """n matched, complete (image, text) pairs: the first caption of each :func:`sample_captioned` image."""
    return [(image, texts[0]) for image, texts in sample_captioned(seed, n)]
