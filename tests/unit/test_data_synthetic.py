"""Synthetic benchmark: deterministic, written in the real layouts, sizes and sessions, complementary cues."""

import itertools
import json
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from transformers import BertTokenizer

from delo.config import SyntheticConfig, load_config
from delo.data import DataError, load_benchmark, prepare_data
from delo.data.synthetic import (
    FILLER_WORDS,
    GENERATOR_VERSION,
    MC_CLASSES,
    ML_GENRES,
    WORLD_WORDS,
    check_synthetic,
    ensure_synthetic,
    generate,
    sample_pairs,
    variant_dir,
)


@pytest.fixture(scope="module")
def _module_cache(tmp_path_factory):
    """The full-size worlds take seconds to write: the layout and probe tests share one cache."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _own_cache(_module_cache, monkeypatch):
    monkeypatch.setenv("DELO_CACHE", str(_module_cache))


def _cfg(kind: str, eta: float = 0.7, **syn):
    return load_config(extra={"data": {"synthetic": {"kind": kind, **syn}, "missing": {"eta": eta}}})


def _tokenizer():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate([*specials, *WORLD_WORDS])})
    assert tok.vocab_size == len(specials) + len(WORLD_WORDS)
    return tok


def test_world_words_and_pretraining_pairs(tmp_path, monkeypatch):
    monkeypatch.setenv("DELO_CACHE", str(tmp_path / "cache"))
    assert len(set(WORLD_WORDS)) == len(WORLD_WORDS) and all(w == w.lower() for w in WORLD_WORDS)
    pairs = sample_pairs(5, 40)
    again = sample_pairs(5, 40)
    assert len(pairs) == 40 and all(img.size == (64, 64) and img.mode == "RGB" for img, _ in pairs)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) and s == t
        for (a, s), (b, t) in zip(pairs, again, strict=True)
    )
    assert [t for _, t in sample_pairs(6, 40)] != [t for _, t in pairs]
    words = {w for _, text in sample_pairs(0, 400) for w in re.findall(r"[a-z]+", text)}
    assert words <= set(WORLD_WORDS) and set(FILLER_WORDS) <= words
    assert {w for _, t in pairs for w in t.replace(".", " ").split()} <= set(WORLD_WORDS)
    assert not (tmp_path / "cache").exists()  # no cache folder needed


@pytest.mark.parametrize("kind", ["mc", "ml"])
def test_generation_is_deterministic(tmp_path, kind):
    b = generate(SyntheticConfig(kind=kind, seed=3, scale=0.2), tmp_path / "b")
    b2 = generate(SyntheticConfig(kind=kind, seed=3, scale=0.2), tmp_path / "b2")
    c = generate(SyntheticConfig(kind=kind, seed=4, scale=0.2), tmp_path / "c")
    assert b["content_hash"] == b2["content_hash"] != c["content_hash"]
    assert json.loads((tmp_path / "b" / "generator.json").read_text())["content_hash"] == b["content_hash"]


def test_each_world_has_its_own_folder_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DELO_CACHE", str(tmp_path / "cache"))
    plain, shifted = (
        SyntheticConfig(kind="mc", scale=0.1),
        SyntheticConfig(kind="mc", scale=0.1, dominant=0.5),
    )
    with pytest.raises(DataError, match="not found; run prepare_data"):
        load_benchmark(_cfg("mc", scale=0.1))
    folder = ensure_synthetic(plain)
    assert folder == variant_dir(plain) and re.fullmatch(
        rf"mc-s0-v{GENERATOR_VERSION}-[0-9a-f]{{8}}", folder.name
    )
    stamp = (folder / "generator.json").stat().st_mtime_ns
    assert ensure_synthetic(plain) == folder
    assert (folder / "generator.json").stat().st_mtime_ns == stamp  # a matching folder is never rebuilt
    with pytest.raises(DataError, match="not found; run prepare_data"):
        check_synthetic(shifted)
    other = ensure_synthetic(shifted)  # a grid over a knob: the first world stays where it is
    assert other != folder and other.name.startswith(f"mc-s0-v{GENERATOR_VERSION}-")
    assert (folder / "generator.json").stat().st_mtime_ns == stamp
    metas = {cfg.dominant: check_synthetic(cfg)[1] for cfg in (plain, shifted)}
    assert metas[0.0]["dominant"] == 0.0 and metas[0.5]["dominant"] == 0.5
    assert metas[0.0]["content_hash"] != metas[0.5]["content_hash"]
    assert variant_dir(SyntheticConfig(kind="mc", scale=0.1)) == folder  # stable across instances
    names = sorted(p.name for p in folder.parent.iterdir())
    assert names == sorted([folder.name, folder.name + ".lock", other.name, other.name + ".lock"])
    for dominant in (0.0, 0.5):  # both worlds load side by side, each with its own missing tables
        cfg = _cfg("mc", scale=0.1, dominant=dominant)
        prepare_data(cfg)
        assert load_benchmark(cfg).report["root"] == str(variant_dir(cfg.data.synthetic))


def test_mc_layout_sizes_and_sessions():
    cfg = _cfg("mc")
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    root = variant_dir(cfg.data.synthetic)
    # its build time is recorded (a figure, not a timed test: about 11 s on 2 idle cores)
    assert json.loads((root / "generator.json").read_text())["seconds"] > 0
    class_idx = json.loads((root / "class_idx.json").read_text())
    assert list(class_idx) != sorted(class_idx) and class_idx[MC_CLASSES[20]] == 20
    assert (root / "texts" / "train_titles.csv").read_text().split("\n")[0].count('"') == 2
    assert bench.num_tasks == 5 and bench.task_classes[1] == [4, 5, 6, 7]
    assert bench.label_names == list(MC_CLASSES[:20])
    assert {s: sum(bench.report["sizes"][s]) for s in ("train", "val", "test")} == {
        "train": 800,
        "val": 3000,
        "test": 6000,
    }
    assert bench.report["dropped_unused_class"] == 490
    codes = Counter(x.missing for x in bench.split(2, "train"))
    assert codes == {0: 48, 1: 56, 2: 56}  # eta 0.7 both: 30 % / 35 % / 35 %
    tok = _tokenizer()
    texts = [s.text for t in range(5) for s in bench.split(t, "test")]
    assert all(8 <= len(t.split()) <= 24 for t in texts)
    assert max(len(tok(t)["input_ids"]) for t in texts) <= 40
    assert Image.open(bench.split(0, "val")[0].image).size == (64, 64)


def test_ml_layout_sizes_sessions_and_frequencies():
    cfg = _cfg("ml")
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    root = variant_dir(cfg.data.synthetic)
    # its build time is recorded (a figure, not a timed test: about 6-8 s on 2 idle cores)
    assert json.loads((root / "generator.json").read_text())["seconds"] > 0
    split = json.loads((root / "split.json").read_text())
    assert set(split) == {"train", "dev", "test"} and all(re.fullmatch(r"\d{7}", i) for i in split["train"])
    counts: Counter[str] = Counter()
    n_plots = Counter()
    for path in (root / "labels").iterdir():
        meta = json.loads(path.read_text())
        counts.update(meta["genres"])
        n_plots[len(meta["plot"])] += 1
    assert set(n_plots) == {1, 2, 3}
    freq = [counts[g] for g in ML_GENRES]
    assert all(a > b for a, b in itertools.pairwise(freq))  # strictly decreasing; the 2 rarest are dropped
    assert bench.num_tasks == 4 and bench.label_names == list(ML_GENRES[:12])
    assert bench.report["sizes"] == {
        "train": [150] * 4,
        "val": [300] * 4,
        "test": [600] * 4,
    }  # rarest = intended
    assert bench.report["dropped_no_kept_label"] == 3
    cardinality = Counter(len(s.label) for t in range(4) for s in bench.split(t, "train"))
    assert set(cardinality) == {1, 2, 3}
    for t in range(4):  # every sample holds a label of its own session and only earlier co-labels
        for s in bench.split(t, "test"):
            assert max(s.label) // 3 == t
    tok = _tokenizer()
    assert max(len(tok(s.text)["input_ids"]) for t in range(4) for s in bench.split(t, "val")) <= 40


# ----------------------------------------------------------------------------------------------------------
# Linear probes: the views are complementary, the session cues are in both


def _image_features(path) -> np.ndarray:
    """Hue histogram of the saturated (glyph) pixels plus the mean colour (background)."""
    rgb = np.asarray(Image.open(path), dtype=np.float32) / 255
    mx, mn = rgb.max(-1), rgb.min(-1)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    delta = np.maximum(mx - mn, 1e-6)
    hue = (
        np.where(mx == r, ((g - b) / delta) % 6, np.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4))
        / 6
    )
    sat = (mx - mn) > 0.45
    hist = np.histogram(hue[sat], bins=20, range=(0, 1))[0] / sat.size
    return np.concatenate([hist * 10, rgb.reshape(-1, 3).mean(0)])


def _text_features(text: str) -> np.ndarray:
    index = {w: i for i, w in enumerate(WORLD_WORDS)}
    out = np.zeros(len(WORLD_WORDS), np.float32)
    for w in text.split():
        out[index[w]] = 1.0
    return out


def _probe(x_train, y_train, x_test, y_test) -> float:
    """Test accuracy of a linear probe: a ridge-regression classifier on one-hot targets (closed form)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = np.hstack([(x_train - mean) / std, np.ones((len(x_train), 1))])
    xe = np.hstack([(x_test - mean) / std, np.ones((len(x_test), 1))])
    targets = np.eye(int(y_train.max()) + 1)[y_train]
    w = np.linalg.solve(xt.T @ xt + 1.0 * np.eye(xt.shape[1]), xt.T @ targets)
    return float(((xe @ w).argmax(1) == y_test).mean())


def test_views_are_complementary_and_sessions_visible_in_both():
    cfg = _cfg("mc", eta=0.0)
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    feats = {}
    for split in ("train", "test"):
        rows = [s for t in range(bench.num_tasks) for s in bench.split(t, split)]
        feats[split] = (
            np.stack([_image_features(s.image) for s in rows]),
            np.stack([_text_features(s.text) for s in rows]),
            np.array([s.label for s in rows]),
            np.array([s.task for s in rows]),
        )
    scores = {"image": [], "text": [], "both": []}
    for t in range(bench.num_tasks):  # task-aware probes: the 4 classes of one session
        (itr, ttr, ytr, ktr), (ite, tte, yte, kte) = feats["train"], feats["test"]
        a, e = ktr == t, kte == t
        views = {
            "image": (itr, ite),
            "text": (ttr, tte),
            "both": (np.hstack([itr, ttr]), np.hstack([ite, tte])),
        }
        for name, (x_train, x_test) in views.items():
            scores[name].append(_probe(x_train[a], ytr[a] - 4 * t, x_test[e], yte[e] - 4 * t))
    acc = {k: float(np.mean(v)) for k, v in scores.items()}
    assert acc["both"] >= 0.9, acc
    assert acc["image"] <= acc["both"] - 0.15 and acc["text"] <= acc["both"] - 0.15, acc
    assert acc["image"] >= 0.6 and acc["text"] >= 0.6, acc  # evidence present in 65 % of samples per view
    (itr, ttr, _, ktr), (ite, tte, _, kte) = feats["train"], feats["test"]
    assert _probe(itr[:, -3:], ktr, ite[:, -3:], kte) >= 0.95  # session from the background colour alone
    assert _probe(ttr, ktr, tte, kte) >= 0.95  # session from the topic words alone
