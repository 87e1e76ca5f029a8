"""Synthetic benchmark on disk: deterministic, written in the real layouts, sizes and sessions, cached per knob.

The rules of world v3 itself (disjoint concepts, no session cue, classes as compositions) are in
tests/unit/test_world_rules.py.
"""

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
    GENERATOR_VERSION,
    MC_CLASSES,
    MC_SESSIONS,
    ML_GENRES,
    WORLD_WORDS,
    check_synthetic,
    ensure_synthetic,
    generate,
    sample_pairs,
    variant_dir,
)
from delo.data.synthetic_world import FILLER_WORDS, FINE, GREY, PALETTE, SHAPES


@pytest.fixture(scope="module")
def _module_cache(tmp_path_factory):
    """The layout tests share one cache."""
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
    assert set(WORLD_WORDS) == {*PALETTE, *FINE, GREY, *SHAPES, *FILLER_WORDS}
    pairs = sample_pairs(5, 40)
    again = sample_pairs(5, 40)
    assert len(pairs) == 40 and all(img.size == (64, 64) and img.mode == "RGB" for img, _ in pairs)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) and s == t
        for (a, s), (b, t) in zip(pairs, again, strict=True)
    )
    assert [t for _, t in sample_pairs(6, 40)] != [t for _, t in pairs]
    words = {w for _, text in sample_pairs(0, 1000) for w in re.findall(r"[a-z]+", text)}
    assert words == set(WORLD_WORDS) - set(FINE)  # every word but the class words is pretrained on
    assert not (tmp_path / "cache").exists()  # no cache folder needed


@pytest.mark.parametrize("kind", ["mc", "ml"])
def test_generation_is_deterministic(tmp_path, kind):
    scale = 0.05 if kind == "mc" else 0.1
    b = generate(SyntheticConfig(kind=kind, seed=3, scale=scale), tmp_path / "b")
    b2 = generate(SyntheticConfig(kind=kind, seed=3, scale=scale), tmp_path / "b2")
    c = generate(SyntheticConfig(kind=kind, seed=4, scale=scale), tmp_path / "c")
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
    assert GENERATOR_VERSION == 3
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
    assert metas[0.0]["session_cue"] == 0.0 and metas[0.0]["version"] == 3
    assert metas[0.0]["content_hash"] != metas[0.5]["content_hash"]
    assert variant_dir(SyntheticConfig(kind="mc", scale=0.1)) == folder  # stable across instances
    cued = SyntheticConfig(kind="mc", scale=0.1, session_cue=1.0)
    assert variant_dir(cued) not in (folder, other)  # the cue knob is part of the key
    names = sorted(p.name for p in folder.parent.iterdir())
    assert names == sorted([folder.name, folder.name + ".lock", other.name, other.name + ".lock"])
    for dominant in (0.0, 0.5):  # both worlds load side by side, each with its own missing tables
        cfg = _cfg("mc", scale=0.1, dominant=dominant)
        prepare_data(cfg)
        assert load_benchmark(cfg).report["root"] == str(variant_dir(cfg.data.synthetic))


def test_old_world_folders_are_left_alone(tmp_path, monkeypatch):
    """A v2 folder in the cache is another world's: v3 is built beside it and never reads or removes it."""
    monkeypatch.setenv("DELO_CACHE", str(tmp_path / "cache"))
    cfg = SyntheticConfig(kind="mc", scale=0.05)
    old = variant_dir(cfg).with_name(variant_dir(cfg).name.replace("-v3-", "-v2-"))
    old.mkdir(parents=True)
    (old / "generator.json").write_text(json.dumps({"version": 2, "content_hash": "x"}))
    assert ensure_synthetic(cfg) != old and (old / "generator.json").is_file()


def test_mc_layout_sizes_and_sessions():
    """A fifth of the default world (train / val / test 16 / 30 / 60 per class); the default sizes are these
    times 5 (docs/benchmark.md)."""
    cfg = _cfg("mc", scale=0.2)
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    root = variant_dir(cfg.data.synthetic)
    assert json.loads((root / "generator.json").read_text())["seconds"] > 0
    class_idx = json.loads((root / "class_idx.json").read_text())
    assert list(class_idx) != sorted(class_idx) and class_idx[MC_CLASSES[20]] == 20
    assert (root / "texts" / "train_titles.csv").read_text().split("\n")[0].count('"') == 2
    assert bench.num_tasks == MC_SESSIONS == 5 and bench.task_classes[1] == [4, 5, 6, 7]
    assert bench.label_names == list(MC_CLASSES[:20])
    assert {s: sum(bench.report["sizes"][s]) for s in ("train", "val", "test")} == {
        "train": 320,
        "val": 600,
        "test": 1200,
    }
    assert bench.report["dropped_unused_class"] == 106
    codes = Counter(x.missing for x in bench.split(2, "train"))
    assert codes == {0: 20, 1: 22, 2: 22}  # eta 0.7 both: floor(64 * 0.7) = 44 missing, half each way
    tok = _tokenizer()
    texts = [s.text for t in range(MC_SESSIONS) for s in bench.split(t, "test")]
    assert all(12 <= len(t.split()) <= 24 for t in texts)
    assert max(len(tok(t)["input_ids"]) for t in texts) <= 40
    assert Image.open(bench.split(0, "val")[0].image).size == (64, 64)


def test_ml_layout_sizes_sessions_and_frequencies():
    """Half the default world (train / val / test 75 / 150 / 300 movies per session)."""
    cfg = _cfg("ml", scale=0.5)
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    root = variant_dir(cfg.data.synthetic)
    assert json.loads((root / "generator.json").read_text())["seconds"] > 0
    split = json.loads((root / "split.json").read_text())
    assert set(split) == {"train", "dev", "test"} and all(re.fullmatch(r"\d{7}", i) for i in split["train"])
    counts: Counter[str] = Counter()
    n_plots = Counter()
    for path in (root / "labels").iterdir():
        meta = json.loads(path.read_text())
        counts.update(meta["genres"])
        n_plots[len(meta["plot"])] += 1
        assert len(meta["genres"]) <= 4
    assert set(n_plots) == {1, 2, 3}
    freq = [counts[g] for g in ML_GENRES]
    assert all(a > b for a, b in itertools.pairwise(freq))  # strictly decreasing; the 2 rarest are dropped
    assert bench.num_tasks == 4 and bench.label_names == list(ML_GENRES[:12])
    assert bench.report["sizes"] == {"train": [75] * 4, "val": [150] * 4, "test": [300] * 4}
    assert bench.report["dropped_no_kept_label"] == 3
    cardinality = Counter(len(s.label) for t in range(4) for s in bench.split(t, "train"))
    assert set(cardinality) == {1, 2, 3}
    for t in range(4):  # every sample holds a label of its own session and only earlier co-labels
        for s in bench.split(t, "test"):
            assert max(s.label) // 3 == t
    tok = _tokenizer()
    assert max(len(tok(s.text)["input_ids"]) for t in range(4) for s in bench.split(t, "val")) <= 40
