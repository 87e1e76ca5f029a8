"""The embedded world, version 3 (docs/benchmark.md): primitives the backbone is pretrained on, and benchmark
classes composed from them in a way pretraining never shows.

Primitives: eleven colours (ten hues and grey), six glyph shapes, and their words. A pretraining pair
(:func:`sample_pairs`) shows 1-3 single-coloured glyphs anywhere on a pale background, and its caption names
each glyph as "<colour> <shape>", the glyphs in random order: pretraining concepts are bags of objects.

A multi-class (``mc``) class is a **layout**: four distinct colours of :data:`CLASS_COLOURS` on the four
quadrants of a 2 x 2 grid, read top-left, top-right, bottom-left, bottom-right. The image shows one glyph per
quadrant; the text describes the four glyphs as "<colour> <shape>" in that reading order. Each session holds the
four mirror images of one layout (itself, left-right, top-bottom, both), so the classes of a session have the
same colours and differ only by where they are; two sessions use each colour set (the second the transposed
layouts). A multi-label (``ml``) genre is an ordered colour pair on **one bicoloured glyph** (left half, right
half); its text is "<left colour> <right colour> <shape>".

Where a modality does not carry a sample's class evidence its glyphs are grey and its text says "grey".
Non-class content (background hue, filler and topic words, glyph shapes, sizes and placement, noise) comes from
one distribution for every session unless ``session_cue`` > 0 (then that share of the samples shows its
session's background hue and topic words, as world v2 did for every sample).
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
PAIRS_VERSION = 2
"""Seeds :func:`sample_pairs` (version 1 drew the v2 benchmark's own classes; 2 is the v3 pretraining world)."""

PALETTE: dict[str, float] = {
    "red": 0.0, "orange": 0.1, "yellow": 0.2, "lime": 0.3, "green": 0.4,
    "cyan": 0.5, "blue": 0.6, "indigo": 0.7, "purple": 0.8, "pink": 0.9,
}  # fmt: skip
"""The ten saturated glyph colours (name -> hue); grey is the eleventh, the colour of absent evidence."""
GREY = "grey"
CLASS_COLOURS: tuple[str, ...] = ("red", "yellow", "green", "blue", "purple")
"""The five colours classes are made of (hues 0.2 apart)."""
SHAPES: tuple[str, ...] = ("disk", "square", "triangle", "cross", "ring", "diamond")
FILLER_WORDS: tuple[str, ...] = (
    "the", "a", "an", "of", "with", "and", "in", "on", "for", "from", "at", "by", "to", "is", "was", "very",
    "fresh", "old", "new", "big", "small", "warm", "cold", "simple", "classic", "little", "quiet", "bright",
    "one", "two", "day", "night", "home", "city", "friend", "story", "style", "recipe", "journey", "life",
)  # fmt: skip
WORLD_WORDS: tuple[str, ...] = tuple(sorted({*PALETTE, GREY, *SHAPES, *FILLER_WORDS}))
"""Every word any synthetic text can contain (lowercase). The only other symbol is ".", which the MM-IMDb
reader puts between plots when it joins them with ". "."""

# ----------------------------------------------------------------------------------------------------------
# Multi-class: layouts

QUADRANTS = 4  # reading order: top-left, top-right, bottom-left, bottom-right
MIRRORS: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0))
"""The Klein four-group on the quadrants: identity, left-right mirror, top-bottom mirror, half turn. It acts
regularly, so the four mirror images of a layout put each of its colours once on every quadrant (a Latin
square): any one quadrant tells a session's classes apart, and none is told apart by its colours."""
TRANSPOSE = (0, 2, 1, 3)
"""Swaps top-right and bottom-left: a layout outside the mirror images of the first (another coset)."""
MC_PER_SESSION = 4
MC_COLOUR_SETS = 5
"""Colour sets in use: CLASS_COLOURS minus one colour each; two sessions per set."""
MC_SESSIONS = 2 * MC_COLOUR_SETS


def _mirror_images(layout: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [tuple(layout[m[q]] for q in range(QUADRANTS)) for m in MIRRORS]


def _mc_layouts() -> tuple[tuple[str, ...], ...]:
    """Every class's layout in class order: session s uses colour set s % 5, its base layout (the set in colour
    order) for s < 5 and the transposed base for s >= 5; then one unused class (a third coset of set 0)."""
    layouts: list[tuple[str, ...]] = []
    for s in range(MC_SESSIONS):
        colours = tuple(c for c in CLASS_COLOURS if c != CLASS_COLOURS[s % MC_COLOUR_SETS])
        base = colours if s < MC_COLOUR_SETS else tuple(colours[TRANSPOSE[q]] for q in range(QUADRANTS))
        layouts += _mirror_images(base)
    first = tuple(c for c in CLASS_COLOURS if c != CLASS_COLOURS[0])
    layouts.append((first[0], first[1], first[3], first[2]))
    return tuple(layouts)


MC_LAYOUTS: tuple[tuple[str, ...], ...] = _mc_layouts()
"""Class c's colours on (top-left, top-right, bottom-left, bottom-right). Index MC_SESSIONS * 4 is outside every
session, so the reader's dropping of unused classes is exercised."""
MC_CLASSES: tuple[str, ...] = tuple("-".join(layout) for layout in MC_LAYOUTS)

# ----------------------------------------------------------------------------------------------------------
# Multi-label: bicoloured glyphs

ML_PER_SESSION = 3
ML_SESSIONS = 4
_ML_PAIRS = ((0, 1), (1, 0), (2, 3), (3, 2), (0, 2), (2, 0), (1, 3), (3, 1), (0, 4), (4, 0), (1, 4), (4, 1),
             (2, 4), (4, 2))  # fmt: skip
ML_PAIRS: tuple[tuple[str, str], ...] = tuple((CLASS_COLOURS[a], CLASS_COLOURS[b]) for a, b in _ML_PAIRS)
"""Genre g's (left half, right half) colours, genres in strictly decreasing frequency; the first 12 form 4
sessions of 3 (each session holds one pair and its reverse), the two rarest are dropped by the reader."""
ML_GENRES: tuple[str, ...] = tuple(f"{a.capitalize()}-{b.capitalize()}" for a, b in ML_PAIRS)


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


def colour_rgb(name: str) -> np.ndarray:
    if name == GREY:
        return np.array([128.0, 128.0, 128.0], np.float32)
    r, g, b = colorsys.hsv_to_rgb(PALETTE[name], 0.9, 0.9)
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


@dataclass(frozen=True)
class Glyph:
    """A glyph: shape, centre, radius, and its colour(s): one, or (left half, right half)."""

    shape: str
    cx: float
    cy: float
    r: float
    colours: tuple[str, ...]


def background(hue: float) -> np.ndarray:
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.3, 0.93)
    img[:] = (255.0 * r, 255.0 * g, 255.0 * b)
    return img


def render(rng: np.random.Generator, img: np.ndarray, glyphs: list[Glyph]) -> np.ndarray:
    """Paint the glyphs (a bicoloured one split at its centre line), add pixel noise; (64, 64, 3) uint8."""
    for glyph in glyphs:
        mask = shape_mask(glyph.shape, glyph.cx, glyph.cy, glyph.r)
        left = np.less(_COLS, glyph.cx)  # (64, 64): columns left of the centre line
        halves = [mask] if len(glyph.colours) == 1 else [mask & left, mask & ~left]
        for half, colour in zip(halves, glyph.colours, strict=True):
            img[half] = colour_rgb(colour) + rng.uniform(-12, 12, size=3)
    img += rng.normal(0.0, 6.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def cell_glyphs(rng: np.random.Generator, cells: list[int], colours: list[tuple[str, ...]]) -> list[Glyph]:
    """One glyph per given quadrant cell (0-3, reading order): radius 8-12, jittered inside its cell."""
    glyphs = []
    for cell, colour in zip(cells, colours, strict=True):
        r = rng.uniform(8, 12)
        cx = 32 * (cell % 2) + rng.uniform(r, 32 - r)
        cy = 32 * (cell // 2) + rng.uniform(r, 32 - r)
        glyphs.append(Glyph(SHAPES[rng.integers(len(SHAPES))], cx, cy, r, colour))
    return glyphs


def compose_text(rng: np.random.Generator, description: list[str], topic: tuple[str, ...]) -> list[str]:
    """12-24 words: 0-3 filler words, the description, then the rest of the fillers and the topic words."""
    length = max(len(description) + len(topic), int(rng.integers(12, 25)))
    n_fill = length - len(description) - len(topic)
    fill = [FILLER_WORDS[i] for i in rng.integers(0, len(FILLER_WORDS), size=n_fill)]
    others = [*topic, *fill]
    others = [others[i] for i in rng.permutation(len(others))]
    n_before = min(int(rng.integers(0, 4)), len(others))
    return others[:n_before] + description + others[n_before:]


def describe(glyphs: list[Glyph], in_text: list[bool]) -> list[str]:
    """The glyphs in order, each "<colour(s)> <shape>"; a glyph whose evidence is not in the text is "grey"."""
    words: list[str] = []
    for glyph, shown in zip(glyphs, in_text, strict=True):
        words += [*(glyph.colours if shown else (GREY,)), glyph.shape]
    return words


@dataclass(frozen=True)
class Spec:
    """What one sample shows before it is drawn: background hue, glyphs as shown, and the text's words."""

    hue: float
    glyphs: tuple[Glyph, ...]
    words: tuple[str, ...]


def grey(glyph: Glyph) -> Glyph:
    return Glyph(glyph.shape, glyph.cx, glyph.cy, glyph.r, (GREY,))


def mc_spec(
    rng: np.random.Generator, c: int, session: int, knobs: Knobs, num_sessions: int = MC_SESSIONS
) -> Spec:
    """Class c with the context of ``session``: its layout in the image and/or the text, grey elsewhere."""
    in_image, in_text = _evidence(rng, knobs)
    context = draw_context(rng, session, num_sessions, knobs)
    glyphs = cell_glyphs(rng, list(range(QUADRANTS)), [(colour,) for colour in MC_LAYOUTS[c]])
    words = compose_text(rng, describe(glyphs, [in_text] * QUADRANTS), context.topic)
    return Spec(context.hue, tuple(g if in_image else grey(g) for g in glyphs), tuple(words))


def ml_spec(rng: np.random.Generator, genres: list[int], session: int, knobs: Knobs) -> Spec:
    """The given genres, one bicoloured glyph each in random cells (reading order), with the context of
    ``session``; each genre's evidence is in the image, the text or both."""
    context = draw_context(rng, session, ML_SESSIONS, knobs)
    cells = sorted(rng.permutation(QUADRANTS)[: len(genres)].tolist())
    order = rng.permutation(len(genres))  # which genre sits in which (sorted) cell
    glyphs = cell_glyphs(rng, cells, [ML_PAIRS[genres[i]] for i in order])
    evidence = [_evidence(rng, knobs) for _ in glyphs]
    words = compose_text(rng, describe(glyphs, [txt for _, txt in evidence]), context.topic)
    shown = tuple(g if img else grey(g) for g, (img, _) in zip(glyphs, evidence, strict=True))
    return Spec(context.hue, shown, tuple(words))


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


# ----------------------------------------------------------------------------------------------------------
# The world's definition of a class: what a sample shows, read from its spec


def cell_of(glyph: Glyph) -> int:
    """The quadrant cell (reading order) that holds the glyph's centre."""
    return int(glyph.cx >= IMAGE_SIZE / 2) + 2 * int(glyph.cy >= IMAGE_SIZE / 2)


def image_layout(glyphs: tuple[Glyph, ...]) -> tuple[str, ...] | None:
    """The layout an image shows: four single-coloured glyphs, one centred in each quadrant cell, of four
    distinct class colours -> their colours in reading order; anything else shows no layout."""
    by_cell = {cell_of(g): g.colours for g in glyphs}
    if len(glyphs) != QUADRANTS or len(by_cell) != QUADRANTS or any(len(c) != 1 for c in by_cell.values()):
        return None
    layout = tuple(by_cell[q][0] for q in range(QUADRANTS))
    return layout if set(layout) <= set(CLASS_COLOURS) and len(set(layout)) == QUADRANTS else None


def text_layout(words: tuple[str, ...]) -> tuple[str, ...] | None:
    """The layout a text shows: its colour words, in order, are four distinct class colours."""
    colours = tuple(w for w in words if w in PALETTE or w == GREY)
    ok = len(colours) == QUADRANTS and set(colours) <= set(CLASS_COLOURS) and len(set(colours)) == QUADRANTS
    return colours if ok else None


def mc_classes_shown(spec: Spec) -> set[int]:
    """The classes a sample shows in either modality (a layout of no class shows none)."""
    layouts = {image_layout(spec.glyphs), text_layout(spec.words)} - {None}
    return {MC_LAYOUTS.index(layout) for layout in layouts if layout in MC_LAYOUTS}


def ml_genres_shown(spec: Spec) -> set[int]:
    """The genres a sample shows: a glyph whose (left, right) halves have a genre's colours, or two colour words
    in a row followed by a shape word that name a genre's colours in that order."""
    pairs = {g.colours for g in spec.glyphs if len(g.colours) == 2}
    w = spec.words
    pairs |= {(w[i], w[i + 1]) for i in range(len(w) - 2) if w[i] in PALETTE and w[i + 1] in PALETTE
              and w[i + 2] in SHAPES}  # fmt: skip
    return {ML_PAIRS.index(p) for p in pairs if p in ML_PAIRS}


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


# ----------------------------------------------------------------------------------------------------------
# Pretraining pairs


def free_glyphs(rng: np.random.Generator, colours: list[str]) -> list[Glyph]:
    """Single-coloured glyphs anywhere on the canvas (radius 8-13), not overlapping (by rejection)."""
    glyphs: list[Glyph] = []
    for colour in colours:
        for _ in range(100):
            r = rng.uniform(8, 13)
            cx, cy = rng.uniform(r, IMAGE_SIZE - r, size=2)
            if all(np.hypot(cx - g.cx, cy - g.cy) > r + g.r + 2 for g in glyphs):
                break
        glyphs.append(Glyph(SHAPES[rng.integers(len(SHAPES))], float(cx), float(cy), float(r), (colour,)))
    return glyphs


def pair_spec(rng: np.random.Generator) -> Spec:
    """A pretraining pair: 1-3 glyphs of any colour (grey included) anywhere; the caption names each glyph,
    the glyphs in random order (independent of where they are)."""
    names = [*PALETTE, GREY]
    colours = [names[i] for i in rng.integers(0, len(names), size=int(rng.integers(1, 4)))]
    glyphs = free_glyphs(rng, colours)
    told = [glyphs[i] for i in rng.permutation(len(glyphs))]
    topic = tuple(FILLER_WORDS[i] for i in rng.integers(0, len(FILLER_WORDS), size=int(rng.integers(2, 5))))
    words = compose_text(rng, describe(told, [True] * len(told)), topic)
    return Spec(float(rng.random()), tuple(glyphs), tuple(words))


def sample_pairs(seed: int, n: int) -> list[tuple[Image.Image, str]]:
    """n matched, complete (image, text) pairs of the pretraining world, deterministic by ``seed``.

    Images are 64x64 RGB after a JPEG round trip, like the benchmark's files. Nothing is read from or written
    to disk. No pair shows a class or a genre (docs/benchmark.md, "Disjoint concepts").
    """
    rng = np.random.default_rng([seed, PAIRS_VERSION, 101])
    pairs: list[tuple[Image.Image, str]] = []
    for _ in range(n):
        pixels, text = draw(rng, pair_spec(rng))
        pairs.append((decode_jpeg(jpeg_bytes(pixels)), text))
    return pairs
