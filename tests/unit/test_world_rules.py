"""The rules of world v3 (docs/benchmark.md), on samples drawn in memory by the generator's own functions:

- disjoint concepts: pretraining pairs agree on coarse colours and shapes, and no caption names a fine colour,
  while every benchmark class is a fine colour its two modalities agree on;
- sessions: two fine colours of one coarse colour and two of another, every coarse colour in two sessions;
- a class is fine-grained: coarse colours (image) or coarse words (text) tell only half a session apart;
- no session cue: a sample's non-class content does not tell its session (and does when session_cue = 1).
"""

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import binom

from delo.data.synthetic_world import (
    CAPTIONS_PER_IMAGE,
    FINE,
    FINE_WORDS,
    GREY,
    MC_CLASSES,
    MC_PER_SESSION,
    MC_SESSIONS,
    ML_WORDS,
    PALETTE,
    SHAPES,
    WORLD_WORDS,
    Knobs,
    Spec,
    background,
    coarse_of,
    colour_words,
    draw,
    fine_bin,
    fine_hue,
    mc_spec,
    pair_spec,
    render,
)
from delo.tools.probe import fit_and_score

KEPT = MC_SESSIONS * MC_PER_SESSION


def _session_of(c: int) -> int:
    return c // MC_PER_SESSION


def _mc_specs(knobs: Knobs, per_class: int, seed: int) -> list[tuple[int, Spec]]:
    """(class, spec) for every in-session class, drawn as write_mc draws them."""
    rng = np.random.default_rng(seed)
    return [(c, mc_spec(rng, c, _session_of(c), knobs)) for c in range(KEPT) for _ in range(per_class)]


# ----------------------------------------------------------------------------------------------------------
# Disjoint concepts


def test_benchmark_classes_are_fine_colours_that_pretraining_never_names():
    """What a pretraining pair's image and caption agree on is each glyph's coarse colour and shape; no caption
    contains a fine word. A benchmark class is a fine shade named by its fine word."""
    assert not set(MC_CLASSES[:KEPT]) & set(PALETTE) and set(MC_CLASSES[:KEPT]) <= set(FINE)
    assert len(set(MC_CLASSES)) == len(MC_CLASSES) and set(ML_WORDS) <= set(FINE)
    for c, spec in _mc_specs(Knobs(), 5, seed=1):  # a benchmark sample shows its fine colour
        (glyph,) = spec.glyphs
        word = MC_CLASSES[c]
        assert glyph.hue is None or (coarse_of(glyph.hue), fine_bin(glyph.hue)) == FINE[word]
        assert colour_words(spec.words) in ([word], [GREY]) and (glyph.hue is not None or word in spec.words)
    rng = np.random.default_rng(0)
    specs = [pair_spec(rng, CAPTIONS_PER_IMAGE) for _ in range(3000)]
    words = {w for _, captions in specs for caption in captions for w in caption}
    assert not words & set(FINE)  # no pretraining pair names a class (or a genre)
    assert words == set(WORLD_WORDS) - set(FINE)  # every other word is pretrained on
    for spec, captions in specs:  # what a pair's modalities agree on: the coarse colours and shapes
        glyphs = Counter((GREY if g.hue is None else coarse_of(g.hue), g.shape) for g in spec.glyphs)
        for caption in captions:
            named = [w for w in caption if w in PALETTE or w == GREY]
            shapes = [w for w in caption if w in SHAPES]
            assert Counter(zip(named, shapes, strict=True)) == glyphs
    # fine shades are in pretraining images, unnamed: all four fine bins of every coarse colour occur
    shades = {
        (coarse_of(g.hue), fine_bin(g.hue)) for spec, _ in specs for g in spec.glyphs if g.hue is not None
    }
    assert len(shades) == len(FINE)


def test_pretraining_captions_say_nothing_about_where_things_are():
    """The order in which a caption names its glyphs is independent of their places (left to right); an image's
    five captions name them in independent orders."""
    rng = np.random.default_rng(1)
    firsts = []
    for _ in range(1500):
        spec, captions = pair_spec(rng, CAPTIONS_PER_IMAGE)
        shapes = [g.shape for g in spec.glyphs]
        if len(spec.glyphs) == 2 and len(set(shapes)) == 2:  # two different shapes: the order is readable
            left = min(spec.glyphs, key=lambda g: g.cx)
            firsts += [next(w for w in words if w in SHAPES) == left.shape for words in captions]
    n = len(firsts)
    low, high = binom.interval(0.95, n, 0.5)
    assert n > 500 and low <= sum(firsts) <= high


# ----------------------------------------------------------------------------------------------------------
# Sessions and fine-grained classes


def test_sessions_pair_two_fine_colours_of_two_coarse_colours():
    """Each session: two fine colours of one coarse colour (fine 0, 1) and two of the next (fine 2, 3), a ring
    in which every coarse colour is shared by two sessions, once at each fine pair."""
    uses = Counter()
    for s in range(MC_SESSIONS):
        words = MC_CLASSES[MC_PER_SESSION * s : MC_PER_SESSION * (s + 1)]
        fine = [FINE[w] for w in words]
        coarse = Counter(c for c, _ in fine)
        assert sorted(coarse.values()) == [2, 2]
        uses.update((c, k // 2) for c, k in fine)
        nxt = {FINE[w][0] for w in MC_CLASSES[MC_PER_SESSION * ((s + 1) % MC_SESSIONS) :][:MC_PER_SESSION]}
        assert len(set(coarse) & nxt) == 1  # neighbours in the ring share one coarse colour
    assert set(uses.values()) == {2} and len({c for c, _ in uses}) == MC_SESSIONS
    assert all(fine_hue(w) != fine_hue(v) for w in MC_CLASSES[:KEPT] for v in MC_CLASSES[:KEPT] if w != v)


def _glyph_hues(pixels: np.ndarray) -> np.ndarray:
    """Hue (0-1) of the saturated pixels (the glyph when it is coloured)."""
    rgb = pixels.astype(np.float32) / 255
    mx, mn = rgb.max(-1), rgb.min(-1)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    delta = np.maximum(mx - mn, 1e-6)
    hue = np.where(
        mx == r, ((g - b) / delta) % 6, np.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4)
    )
    return (hue / 6)[(mx - mn) > 0.45]


def _fine_of_pixels(hues: np.ndarray) -> np.ndarray:
    """The coarse colour (one-hot) and, in its slot, the median hue offset from its centre (in fine steps)."""
    coarse = _coarse_of_pixels(hues)
    offsets = (hues - PALETTE[coarse] + 0.5) % 1.0 - 0.5
    slot = np.eye(10)[list(PALETTE).index(coarse)]
    return np.concatenate([slot, slot * np.median(offsets) / 0.024])


def _coarse_of_pixels(hues: np.ndarray) -> str:
    """The coarse colour most of the glyph's pixels fall in."""
    return Counter(coarse_of(float(h)) for h in hues).most_common(1)[0][0]


def _per_session_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Mean over sessions of a per-session linear probe's test accuracy (the session's 4 classes)."""
    accs = []
    for s in range(MC_SESSIONS):
        own = (y // MC_PER_SESSION) == s
        a, b = own & train, own & ~train
        xt, xe = torch.tensor(x[a], dtype=torch.float32), torch.tensor(x[b], dtype=torch.float32)
        accs.append(fit_and_score(xt, torch.tensor(y[a]), xe, torch.tensor(y[b])))
    return float(np.mean(accs))


def test_a_class_is_a_fine_colour_not_a_coarse_one():
    """Within a session, the coarse colour (image) or word (text) reads half the classes; the fine one all."""
    rng = np.random.default_rng(2)
    image_specs = _mc_specs(Knobs(dominant=-1.0), 20, seed=3)  # evidence always in the image
    text_specs = _mc_specs(Knobs(dominant=1.0), 20, seed=4)  # always in the text
    y = np.array([c for c, _ in image_specs])
    train = np.arange(len(y)) % 20 < 10
    hues = [_glyph_hues(draw(rng, spec)[0]) for _, spec in image_specs]
    coarse_image = np.stack([np.eye(10)[list(PALETTE).index(_coarse_of_pixels(h))] for h in hues])
    fine_image = np.stack([_fine_of_pixels(h) for h in hues])
    vocab = {w: i for i, w in enumerate(WORLD_WORDS)}
    coarse_text = np.zeros((len(y), len(vocab)), np.float32)
    fine_text = np.zeros((len(y), len(vocab)), np.float32)
    for i, (_, spec) in enumerate(text_specs):
        (word,) = colour_words(spec.words)
        coarse_text[i, vocab[FINE[word][0]]] = 1
        fine_text[i, vocab[word]] = 1
    half_high = binom.ppf(0.975, int((~train).sum()), 0.5) / (~train).sum()
    assert _per_session_accuracy(coarse_image, y, train) <= half_high + 0.02
    assert _per_session_accuracy(coarse_text, y, train) <= half_high + 0.02
    assert _per_session_accuracy(fine_image, y, train) >= 0.95
    assert _per_session_accuracy(fine_text, y, train) == 1.0


# ----------------------------------------------------------------------------------------------------------
# No session cue


def _non_class_features(rng: np.random.Generator, spec: Spec) -> np.ndarray:
    """Everything but the class: the image with the glyph replaced by background (8 x 8 pooled), the glyph's
    shape, size and place, and the text without its colour word (bag of words, place of the description,
    length)."""
    pixels = render(rng, background(spec.hue), []).astype(np.float32)
    pooled = pixels.reshape(8, 8, 8, 8, 3).mean((1, 3)).ravel() / 255
    (glyph,) = spec.glyphs
    geometry = np.array([glyph.cx / 64, glyph.cy / 64, glyph.r / 12])
    shape = np.eye(len(SHAPES))[SHAPES.index(glyph.shape)]
    kept = [w for w in spec.words if w not in FINE and w != GREY]  # the class word (or its absence) removed
    vocab = {w: i for i, w in enumerate(WORLD_WORDS)}
    bag = np.bincount([vocab[w] for w in kept], minlength=len(vocab))
    place = next(i for i, w in enumerate(kept) if w in SHAPES)
    return np.concatenate([pooled, geometry, shape, bag, [place, len(spec.words)]]).astype(np.float32)


@pytest.mark.parametrize("cue", [0.0, 1.0])
def test_non_class_content_does_not_tell_the_session(cue):
    """A logistic regression on the non-class content of 600 samples predicts the session of 600 others at chance
    (1 / 5, inside the binomial 95 % interval); with session_cue = 1 (the v2 world's cues) it reads it."""
    rng = np.random.default_rng(5)
    specs = _mc_specs(Knobs(session_cue=cue), 60, seed=6)
    x = torch.tensor(np.stack([_non_class_features(rng, spec) for _, spec in specs]))
    session = torch.tensor([_session_of(c) for c, _ in specs])
    train = torch.arange(len(specs)) % 60 < 30
    accuracy = fit_and_score(x[train], session[train], x[~train], session[~train])
    n = int((~train).sum())
    low, high = binom.interval(0.95, n, 1 / MC_SESSIONS)
    if cue == 0.0:
        assert low / n <= accuracy <= high / n, (accuracy, low / n, high / n)
    else:
        assert accuracy >= 0.9, accuracy


def test_fine_words_are_four_per_coarse_colour():
    assert set(FINE_WORDS) == set(PALETTE) and all(len(set(w)) == 4 for w in FINE_WORDS.values())
    assert len(FINE) == 40 and not set(FINE) & {*PALETTE, GREY, *SHAPES}
