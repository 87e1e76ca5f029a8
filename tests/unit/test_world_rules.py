"""The rules of world v3 (docs/benchmark.md), on samples drawn in memory by the generator's own functions:

- disjoint concepts: no pretraining pair shows a class or a genre, by the world's definition of one;
- sessions: the four classes of a session are the mirror images of one layout (a Latin square);
- a class is a composition: the bag of colours or words does not tell a session's classes apart, the layout does;
- no session cue: a sample's non-class content does not tell its session (and does when session_cue = 1).
"""

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import binom

from delo.data.synthetic_world import (
    CLASS_COLOURS,
    MC_LAYOUTS,
    MC_PER_SESSION,
    MC_SESSIONS,
    ML_PAIRS,
    PALETTE,
    QUADRANTS,
    SHAPES,
    WORLD_WORDS,
    Knobs,
    Spec,
    background,
    cell_of,
    draw,
    image_layout,
    mc_classes_shown,
    mc_spec,
    ml_genres_shown,
    ml_spec,
    pair_spec,
    render,
)
from delo.tools.probe import fit_and_score


def _session_of(c: int) -> int:
    return c // MC_PER_SESSION


def _mc_specs(knobs: Knobs, per_class: int, seed: int) -> list[tuple[int, Spec]]:
    """(class, spec) for every in-session class, drawn as write_mc draws them."""
    rng = np.random.default_rng(seed)
    return [
        (c, mc_spec(rng, c, _session_of(c), knobs))
        for c in range(MC_SESSIONS * MC_PER_SESSION)
        for _ in range(per_class)
    ]


# ----------------------------------------------------------------------------------------------------------
# Disjoint concepts


def test_every_benchmark_sample_shows_its_class_and_no_pretraining_pair_shows_one():
    rng = np.random.default_rng(0)
    for c, spec in _mc_specs(Knobs(), 5, seed=1):
        assert mc_classes_shown(spec) == {c}  # the definition reads the generator's own classes
    for g in range(len(ML_PAIRS)):
        for _ in range(5):
            assert g in ml_genres_shown(ml_spec(rng, [g], 0, Knobs()))
    pairs = [pair_spec(rng) for _ in range(3000)]
    assert all(not mc_classes_shown(p) and not ml_genres_shown(p) for p in pairs)
    # ... and not by a narrow miss: no pretraining image has four glyphs or a bicoloured glyph, no caption
    # four colour words or two in a row
    assert max(len(p.glyphs) for p in pairs) == 3 and all(
        len(g.colours) == 1 for p in pairs for g in p.glyphs
    )
    colour_words = [[w for w in p.words if w in PALETTE or w == "grey"] for p in pairs]
    assert max(len(c) for c in colour_words) == 3
    assert not any(
        a in PALETTE and b in PALETTE for p in pairs for a, b in zip(p.words, p.words[1:], strict=False)
    )
    # every primitive is pretrained on: all eleven colours, all six shapes, in images and captions
    assert {g.colours[0] for p in pairs for g in p.glyphs} == {*PALETTE, "grey"}
    assert {g.shape for p in pairs for g in p.glyphs} == set(SHAPES)
    assert {w for p in pairs for w in p.words} == set(WORLD_WORDS)


def test_pretraining_captions_say_nothing_about_where_things_are():
    """The order in which a caption names its glyphs is independent of their places (left to right)."""
    rng = np.random.default_rng(1)
    firsts = []
    for _ in range(3000):
        spec = pair_spec(rng)
        if len(spec.glyphs) == 2:
            named = [w for w in spec.words if w in PALETTE or w == "grey"]
            left = min(spec.glyphs, key=lambda g: g.cx)
            if len({g.colours for g in spec.glyphs}) == 2:  # two different colours: the order is readable
                firsts.append(named[0] == left.colours[0])
    n = len(firsts)
    low, high = binom.interval(0.95, n, 0.5)
    assert n > 500 and low <= sum(firsts) <= high


# ----------------------------------------------------------------------------------------------------------
# Sessions and compositions


def test_sessions_are_the_mirror_images_of_one_layout():
    assert len(set(MC_LAYOUTS)) == len(MC_LAYOUTS) == MC_SESSIONS * MC_PER_SESSION + 1
    colour_sets = []
    for s in range(MC_SESSIONS):
        layouts = MC_LAYOUTS[MC_PER_SESSION * s : MC_PER_SESSION * (s + 1)]
        assert len({frozenset(layout) for layout in layouts}) == 1  # one colour set per session
        assert set(layouts[0]) < set(CLASS_COLOURS) and len(set(layouts[0])) == QUADRANTS
        for q in range(QUADRANTS):  # Latin square: every quadrant shows each colour once
            assert len({layout[q] for layout in layouts}) == QUADRANTS
        colour_sets.append(frozenset(layouts[0]))
    assert set(Counter(colour_sets).values()) == {2}  # two sessions per colour set
    assert MC_LAYOUTS[-1] not in MC_LAYOUTS[:-1]


def _hue_map(pixels: np.ndarray) -> np.ndarray:
    """(64, 64) hue bin (0-9) of each saturated pixel, -1 elsewhere (background, grey glyphs)."""
    rgb = pixels.astype(np.float32) / 255
    mx, mn = rgb.max(-1), rgb.min(-1)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    delta = np.maximum(mx - mn, 1e-6)
    hue = np.where(
        mx == r, ((g - b) / delta) % 6, np.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4)
    )
    bins = np.floor((hue / 6 + 0.05) % 1.0 * 10).astype(int)
    return np.where((mx - mn) > 0.45, bins, -1)


def _hue_hist(bins: np.ndarray) -> np.ndarray:
    """Share of pixels per hue bin: which colours an image (or a part of it) shows, not where."""
    return np.bincount(bins[bins >= 0], minlength=10).astype(np.float32) / bins.size


def _per_session_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Mean over sessions of a per-session linear probe's test accuracy (the session's 4 classes)."""
    accs = []
    for s in range(MC_SESSIONS):
        own = (y // MC_PER_SESSION) == s
        a, b = own & train, own & ~train
        xt, xe = torch.tensor(x[a], dtype=torch.float32), torch.tensor(x[b], dtype=torch.float32)
        accs.append(fit_and_score(xt, torch.tensor(y[a]), xe, torch.tensor(y[b])))
    return float(np.mean(accs))


def test_a_class_is_where_its_colours_are_not_which_colours():
    """Within a session, the bag of colours (image) or words (text) reads chance; the layout reads the class."""
    rng = np.random.default_rng(2)
    image_specs = _mc_specs(Knobs(dominant=-1.0), 20, seed=3)  # evidence always in the image
    text_specs = _mc_specs(Knobs(dominant=1.0), 20, seed=4)  # always in the text
    y = np.array([c for c, _ in image_specs])
    train = np.arange(len(y)) % 20 < 10
    hues = [_hue_map(draw(rng, spec)[0]) for _, spec in image_specs]
    bag = np.stack([_hue_hist(h) for h in hues])
    quadrants = np.stack([
        np.concatenate([_hue_hist(h[32 * (q // 2) : 32 * (q // 2 + 1), 32 * (q % 2) : 32 * (q % 2 + 1)])
                        for q in range(QUADRANTS)])
        for h in hues
    ])  # fmt: skip
    vocab = {w: i for i, w in enumerate(WORLD_WORDS)}
    words = np.zeros((len(y), len(vocab)), np.float32)
    first = np.zeros((len(y), len(vocab)), np.float32)
    for i, (_, spec) in enumerate(text_specs):
        for w in spec.words:
            words[i, vocab[w]] += 1
        first[i, vocab[next(w for w in spec.words if w in CLASS_COLOURS)]] = 1
    chance_high = binom.ppf(0.975, int((~train).sum()), 0.25) / (~train).sum()
    assert _per_session_accuracy(bag, y, train) <= chance_high + 0.02
    assert _per_session_accuracy(words, y, train) <= chance_high + 0.02
    assert _per_session_accuracy(quadrants, y, train) >= 0.95
    assert _per_session_accuracy(first, y, train) == 1.0  # any one place tells a session's classes apart


# ----------------------------------------------------------------------------------------------------------
# No session cue


def _non_class_features(rng: np.random.Generator, spec: Spec) -> np.ndarray:
    """Everything but the class: the image with the glyph regions replaced by background (8 x 8 pooled), the
    glyphs' shapes, sizes and places, and the text without its colour words (bag of words, description offset,
    length)."""
    pixels = render(rng, background(spec.hue), []).astype(np.float32)
    pooled = pixels.reshape(8, 8, 8, 8, 3).mean((1, 3)).ravel() / 255
    geometry = np.array([[g.cx / 64, g.cy / 64, g.r / 12, cell_of(g)] for g in spec.glyphs]).ravel()
    shapes = np.eye(len(SHAPES))[[SHAPES.index(g.shape) for g in spec.glyphs]].ravel()
    kept = [w for w in spec.words if w not in PALETTE]  # "grey" stays: it is evidence absent, not class
    vocab = {w: i for i, w in enumerate(WORLD_WORDS)}
    bag = np.bincount([vocab[w] for w in kept], minlength=len(vocab))
    offset = next(i for i, w in enumerate(kept) if w in SHAPES)
    return np.concatenate([pooled, geometry, shapes, bag, [offset, len(spec.words)]]).astype(np.float32)


@pytest.mark.parametrize("cue", [0.0, 1.0])
def test_non_class_content_does_not_tell_the_session(cue):
    """A logistic regression on the non-class content of 1,200 samples predicts the session of 1,200 others at
    chance (1 / 10, inside the binomial 95 % interval); with session_cue = 1 (the v2 world's cues) it reads it."""
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


def test_layouts_of_the_image_are_the_class_layouts():
    """The image of an image-evidence sample shows its class's layout at the places the text names."""
    rng = np.random.default_rng(7)
    for c, spec in _mc_specs(Knobs(dominant=-1.0), 3, seed=8):
        assert image_layout(spec.glyphs) == MC_LAYOUTS[c]
        assert [cell_of(g) for g in spec.glyphs] == list(range(QUADRANTS))
        shapes = [w for w in spec.words if w in SHAPES]
        assert shapes == [
            g.shape for g in spec.glyphs
        ]  # the text describes the same glyphs, in reading order
    assert rng is not None
