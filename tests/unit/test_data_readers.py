"""Real-layout readers on tiny fixtures written here: labels, splits, sessions, texts, and clear errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from delo.config import ConfigError, load_config
from delo.data import DataError, load_benchmark, prepare_data
from delo.data.food101 import clean_title

# A class_idx order that is not alphabetical; the last class ("baklava", like Food101's 100) is unused.
FOOD_CLASSES = [f"dish{i:03d}" for i in range(100)][::-1] + ["baklava"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELO_CACHE", str(tmp_path / "cache"))


def _jpeg(path: Path, size=(8, 6), colour=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG")


def _cfg(name: str, root: Path, **data):
    return load_config(extra={"data": {"name": name, "root": str(root), **data}})


# ----------------------------------------------------------------------------------------------------------
# Food101 raw layout


def make_food101(root: Path, classes=FOOD_CLASSES, text: str = "csv", per_split=(1, 1, 1)) -> dict[str, str]:
    """Writes the raw layout; returns file name -> title (the last train image of class 0 has no title)."""
    split, titles, rows = {"train": [], "val": [], "test": []}, {}, {"train": [], "test": []}
    for cls in classes:
        n = 0
        for s, count in zip(("train", "val", "test"), per_split, strict=True):
            folder = "test" if s == "test" else "train"
            for _ in range(count):
                name = f"{cls}_{n}.jpg"
                n += 1
                _jpeg(root / "images" / folder / cls / name)
                split[s].append(name)
                titles[name] = f"{cls} title {n} &amp; more"
                rows[folder].append(f'{name},"{titles[name]}",{cls}\n')
    untitled = f"{classes[0]}_99.jpg"
    _jpeg(root / "images" / "train" / classes[0] / untitled)
    split["train"].append(untitled)
    (root / "class_idx.json").write_text(json.dumps({c: i for i, c in enumerate(classes)}))
    (root / "split.json").write_text(json.dumps(split))
    if text == "csv":
        (root / "texts").mkdir()
        for folder, lines in rows.items():
            (root / "texts" / f"{folder}_titles.csv").write_text("".join(lines))
    else:
        (root / "text.json").write_text(json.dumps(titles))
    return titles


@pytest.mark.parametrize("text", ["csv", "json"])
def test_food101_raw_default_sessions(tmp_path, text):
    titles = make_food101(tmp_path / "food", text=text)
    cfg = _cfg("food101", tmp_path / "food")
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    assert bench.num_tasks == 10 and not bench.multilabel
    assert bench.task_classes[3] == list(range(30, 40))
    assert bench.label_names == FOOD_CLASSES[:100]  # class_idx order, baklava dropped
    assert bench.report["skipped_no_text"] == 1 and bench.report["dropped_unused_class"] == 3
    train = bench.split(2, "train")
    assert [s.uid for s in train] == sorted(f"{c}_0.jpg" for c in FOOD_CLASSES[20:30])
    for s in train:
        assert s.label == FOOD_CLASSES.index(s.uid.rsplit("_", 1)[0]) and s.task == 2
        assert s.text == titles[s.uid].replace("&amp;", "&")
        assert s.image.is_file() and s.image.parent.parent.name == "train"
    assert all(s.image.parent.parent.name == "test" for s in bench.split(0, "test"))
    assert {s.uid for s in bench.split(0, "val")} == {f"{c}_1.jpg" for c in FOOD_CLASSES[:10]}


def test_title_cleaning():
    assert clean_title("Caf\\xc3\\xa9  au &quot;lait&quot; &amp; more") == 'Café au "lait" & more'


def test_food101_sessions_file_override(tmp_path):
    make_food101(tmp_path / "food")
    sessions = {"sessions": [["dish005", "dish001"], ["baklava", "dish050"]]}
    (tmp_path / "food" / "sessions.json").write_text(json.dumps(sessions))
    cfg = _cfg("food101", tmp_path / "food")
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    assert bench.task_classes == [[0, 1], [2, 3]]
    assert bench.label_names == ["dish005", "dish001", "baklava", "dish050"]
    assert {s.uid: s.label for s in bench.split(1, "test")} == {"baklava_2.jpg": 2, "dish050_2.jpg": 3}


def test_sessions_file_with_unknown_class(tmp_path):
    make_food101(tmp_path / "food")
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"sessions": [["dish001", "tiramisu"]]}))
    with pytest.raises(DataError, match="tiramisu"):
        prepare_data(_cfg("food101", tmp_path / "food", sessions_file=str(path)))


def test_food101_errors(tmp_path):
    root = tmp_path / "food"
    make_food101(root, classes=FOOD_CLASSES[:3], text="json")
    (root / "class_idx.json").unlink()
    with pytest.raises(ConfigError, match=r"class_idx.json not found.*UPMC-Food101 raw layout"):
        prepare_data(_cfg("food101", root, layout="raw"))
    with pytest.raises(DataError, match="CMML manifest layout"):  # auto names both layouts
        prepare_data(_cfg("food101", root))
    with pytest.raises(DataError, match="not a folder"):
        prepare_data(_cfg("food101", tmp_path / "nowhere"))


def test_food101_empty_split(tmp_path):
    root = tmp_path / "food"
    make_food101(root, classes=FOOD_CLASSES[:3], text="json")
    split = json.loads((root / "split.json").read_text())
    split["val"] = []
    (root / "split.json").write_text(json.dumps(split))
    with pytest.raises(DataError, match="'val' is empty"):
        prepare_data(_cfg("food101", root))


# ----------------------------------------------------------------------------------------------------------
# MM-IMDb raw layout and original archive

MOVIES = {  # id: (split, genres, plots)
    "0000001": ("train", ["Drama"], ["a man walks", "he walks far"]),
    "0000002": ("train", ["Drama", "Comedy"], ["two"]),
    "0000003": ("train", ["Comedy"], ["three"]),
    "0000004": ("train", ["Romance", "Drama"], ["four"]),
    "0000005": ("train", ["Thriller"], ["five"]),
    "0000006": ("train", ["Crime", "Drama"], ["six"]),
    "0000007": ("train", ["Action"], ["seven"]),
    "0000008": ("train", ["Horror", "Comedy"], ["eight"]),
    "0000009": ("train", ["Short"], ["nine"]),  # no kept genre: dropped
    "0000010": ("train", ["Drama", "Sport"], ["ten"]),  # Sport ignored
    "0000011": ("train", ["Drama", "Horror"], ["eleven"]),  # rarest: Horror (1); first: Drama (0)
    "0000012": ("dev", ["Drama"], ["twelve"]),
    "0000013": ("dev", ["Action", "Drama"], ["thirteen"]),
    "0000014": ("test", ["Comedy"], ["fourteen"]),
    "0000015": ("test", ["Crime"], ["fifteen"]),
}


def make_mmimdb(root: Path, archive: bool = False) -> None:
    images, labels = (root / "dataset", root / "dataset") if archive else (root / "images", root / "labels")
    labels.mkdir(parents=True, exist_ok=True)
    split = {"train": [], "dev": [], "test": []}
    for movie_id, (s, genres, plots) in MOVIES.items():
        name = movie_id.zfill(8) if archive else movie_id  # the archive variant uses 8-digit file names
        _jpeg(images / f"{name}.jpeg", size=(10, 14))
        (labels / f"{name}.json").write_text(json.dumps({"plot": plots, "genres": genres, "title": "x"}))
        split[s].append(movie_id)
    (root / "split.json").write_text(json.dumps(split))


@pytest.mark.parametrize("archive", [False, True])
def test_mmimdb_raw_rarest(tmp_path, archive):
    make_mmimdb(tmp_path / "mm", archive=archive)
    cfg = _cfg("mmimdb", tmp_path / "mm", num_tasks=2)
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    assert bench.multilabel and bench.num_tasks == 2
    assert bench.label_names == [
        "Drama",
        "Comedy",
        "Romance",
        "Thriller",
        "Crime",
        "Action",
        "Adventure",
        "Horror",
    ]
    assert bench.report["dropped_no_kept_label"] == 1
    t0 = {s.uid: s for s in bench.split(0, "train")}
    t1 = {s.uid: s for s in bench.split(1, "train")}
    assert sorted(t0) == ["0000001", "0000002", "0000003", "0000004", "0000005", "0000010"]
    assert sorted(t1) == ["0000006", "0000007", "0000008", "0000011"]
    assert t1["0000006"].label == (0, 4) and t1["0000006"].num_labels == 8
    assert t0["0000001"].text == "a man walks. he walks far"
    assert t0["0000001"].image.is_file()
    assert [s.uid for s in bench.split(1, "val")] == ["0000013"]
    assert [s.uid for s in bench.split(0, "test")] == ["0000014"]


def test_mmimdb_first_rule_and_per_plot(tmp_path):
    make_mmimdb(tmp_path / "mm")
    cfg = _cfg("mmimdb", tmp_path / "mm", num_tasks=2, assign="first", mmimdb_per_plot=True)
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    t0 = {s.uid: s for s in bench.split(0, "train")}
    assert "0000011#0" in t0  # Drama is listed first
    assert t0["0000001#0"].text == "a man walks" and t0["0000001#1"].text == "he walks far"
    assert bench.report["key"] == "mmimdb-perplot-first"


def test_mmimdb_missing_label_file(tmp_path):
    make_mmimdb(tmp_path / "mm")
    (tmp_path / "mm" / "labels" / "0000005.json").unlink()
    with pytest.raises(DataError, match=r"0000005\.json: label file not found"):
        prepare_data(_cfg("mmimdb", tmp_path / "mm"))


def test_mmimdb_sessions_file_assignments(tmp_path):
    make_mmimdb(tmp_path / "mm")
    sessions = {
        "sessions": [["Comedy", "Drama"], ["Horror", "Crime", "Action", "Romance", "Thriller"]],
        "assign": "rarest",
        "samples": {"0000004": 0},
    }
    (tmp_path / "mm" / "sessions.json").write_text(json.dumps(sessions))
    cfg = _cfg("mmimdb", tmp_path / "mm")
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    assert bench.task_classes == [[0, 1], [2, 3, 4, 5, 6]]
    t0 = {s.uid for s in bench.split(0, "train")}
    assert "0000004" in t0  # forced, although Romance is its rarest genre
    assert "0000008" not in t0  # Horror is rarer than Comedy


# ----------------------------------------------------------------------------------------------------------
# CMML manifest layout


def make_manifest(root: Path, dataset: str, records: list[dict]) -> Path:
    name = {"food101": "UPMC-Food101-CMML", "mmimdb": "MM-IMDB-CMML"}[dataset]
    folder = root / name
    for rec in records:
        _jpeg(folder / "images" / rec["image"])
    (folder / "texts").mkdir(parents=True, exist_ok=True)  # present, never read
    (folder / f"{name}.json").write_text(json.dumps(records))
    return folder


def _food_records(bad_label: bool = False) -> list[dict]:
    out = []
    for task in (0, 1, 10):  # task 10 >= T = 10: dropped
        for split in ("train", "val", "test"):
            for j in range(2):
                label = 10 * task + 3 * j
                out.append(
                    {
                        "task_id": task,
                        "split": split,
                        "image": f"c{label}/{split}_{j}.jpg",
                        "text": f"t {j}",
                        "label": label,
                    }
                )
    if bad_label:
        out[0]["label"] = 15
    return out


def test_manifest_food101(tmp_path):
    make_manifest(tmp_path / "cmml", "food101", _food_records())
    cfg = _cfg("food101", tmp_path / "cmml", num_tasks=2)
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    assert bench.report["layout"] == "manifest" and bench.report["dropped_task"] == 6
    assert bench.task_classes[1] == list(range(10, 20))
    assert bench.label_names[13] == "c13" and bench.label_names[1] == "class_001"
    assert {s.label for s in bench.split(1, "val")} == {10, 13}


def test_manifest_food101_bad_label(tmp_path):
    make_manifest(tmp_path / "cmml", "food101", _food_records(bad_label=True))
    with pytest.raises(DataError, match=r"record 0: label 15 outside \[0, 10\)"):
        prepare_data(_cfg("food101", tmp_path / "cmml"))


def test_manifest_mmimdb(tmp_path):
    recs = []
    for task in range(2):
        for split in ("train", "val", "test"):
            label = [0] * 20
            label[4 * task + 1] = label[0] = 1
            recs.append(
                {
                    "task_id": task,
                    "split": split,
                    "image": f"{task}{split}.jpeg",
                    "text": ["p1", "p2"],
                    "label": label,
                }
            )
    make_manifest(tmp_path, "mmimdb", recs)
    cfg = _cfg("mmimdb", tmp_path, num_tasks=2)
    prepare_data(cfg)
    bench = load_benchmark(cfg)
    (sample,) = bench.split(1, "train")
    assert sample.label == (0, 5) and sample.text == "p1. p2" and sample.num_labels == 8
    assert bench.label_names[5] == "Action"


def test_unreadable_image_names_file(tmp_path):
    from types import SimpleNamespace

    from transformers import BertTokenizer
    from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

    from delo.data import make_loader

    make_food101(tmp_path / "food")
    bad = tmp_path / "food" / "images" / "test" / FOOD_CLASSES[0] / f"{FOOD_CLASSES[0]}_2.jpg"
    bad.write_bytes(b"not a jpeg")
    cfg = _cfg("food101", tmp_path / "food", missing={"eta": 0.0})
    prepare_data(cfg)
    samples = load_benchmark(cfg).split(0, "test")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "title"])}
    backbone = SimpleNamespace(
        tokenizer=BertTokenizer(vocab=vocab),
        image_processor=ViltImageProcessorPil(size={"shortest_edge": 32}, size_divisor=16),
        image_size=32,
        max_text_len=40,
    )
    with pytest.raises(DataError, match=f"{bad.name}: unreadable image"):
        list(make_loader(samples, backbone, 4, shuffle=False, seed=0))
    assert np.asarray(Image.open(samples[1].image)).shape == (6, 8, 3)
