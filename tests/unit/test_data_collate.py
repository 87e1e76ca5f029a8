"""Batching: dummy inputs, text padding, image padding, labels, seeded shuffling that spares the global RNG."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from transformers import BertTokenizer
from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

from delo.data import Sample, dummy_image, make_loader
from delo.data.collate import clear_caches

WORDS = ["a", "red", "dish", "with", "basil", "."]
VOCAB = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}


def _backbone(size=64, patch=16, max_text_len=40):
    tokenizer = BertTokenizer(vocab=VOCAB)
    assert tokenizer.vocab_size == len(VOCAB)  # transformers 5 would silently drop vocab_file=
    processor = ViltImageProcessorPil(size={"shortest_edge": size}, size_divisor=patch)
    return SimpleNamespace(
        tokenizer=tokenizer, image_processor=processor, image_size=size, max_text_len=max_text_len
    )


def _image(path: Path, size=(64, 64), colour=(255, 255, 255)) -> Path:
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path


def _samples(tmp_path, n=6, multilabel=False):
    out = []
    for i in range(n):
        img = _image(tmp_path / f"{i}.png", colour=(10 * i, 0, 0))
        label = (i % 3, 4) if multilabel else i
        out.append(
            Sample(
                f"u{i}",
                img,
                "a red dish with basil",
                label,
                task=i % 2,
                missing=i % 3,
                num_labels=6 * multilabel,
            )
        )
    return out


def test_dummy_image_is_a_normalised_white_image(tmp_path):
    pixel_values, pixel_mask = dummy_image(64)
    assert pixel_values.shape == (3, 64, 64) and bool((pixel_values == 1.0).all())
    assert pixel_mask.shape == (64, 64) and bool((pixel_mask == 1).all())
    white = _backbone().image_processor(images=[Image.new("RGB", (64, 64), "white")], return_tensors="pt")
    assert torch.allclose(white["pixel_values"][0], pixel_values)


def test_batch_fields_dummies_and_padding(tmp_path):
    samples = _samples(tmp_path)
    batch = next(iter(make_loader(samples, _backbone(), 6, shuffle=False, seed=0)))
    assert set(batch) == {
        "input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask", "missing", "task", "labels"
    }  # fmt: skip
    cls, sep, pad = VOCAB["[CLS]"], VOCAB["[SEP]"], VOCAB["[PAD]"]
    assert batch["missing"].tolist() == [0, 1, 2, 0, 1, 2]
    assert batch["task"].tolist() == [0, 1, 0, 1, 0, 1]
    assert batch["labels"].tolist() == list(range(6)) and batch["labels"].dtype == torch.long
    full = [cls] + [VOCAB[w] for w in ["a", "red", "dish", "with", "basil"]] + [sep]
    assert batch["input_ids"][0].tolist() == full
    assert batch["input_ids"][1].tolist() == [cls, sep] + [pad] * 5  # missing text: "" -> [CLS][SEP]
    assert batch["attention_mask"][1].tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert batch["token_type_ids"].abs().sum() == 0
    assert batch["pixel_values"].shape == (6, 3, 64, 64) and batch["pixel_mask"].shape == (6, 64, 64)
    assert bool((batch["pixel_values"][2] == 1.0).all())  # missing image: the dummy
    assert batch["pixel_values"][0, 0, 0, 0].item() == pytest.approx(-1.0)  # black red channel -> -1
    # matches the tokenizer's own batch call
    ref = samples[0].text, "", samples[2].text
    enc = _backbone().tokenizer(
        list(ref), padding="longest", truncation=True, max_length=40, return_tensors="pt"
    )
    assert torch.equal(enc["input_ids"], batch["input_ids"][:3])


def test_truncation_to_max_text_len(tmp_path):
    sample = Sample("u", _image(tmp_path / "i.png"), " ".join(["red"] * 100), 0, task=0)
    batch = next(iter(make_loader([sample], _backbone(max_text_len=12), 1, shuffle=False, seed=0)))
    assert batch["input_ids"].shape == (1, 12) and batch["input_ids"][0, -1] == VOCAB["[SEP]"]


def test_multilabel_labels(tmp_path):
    batch = next(
        iter(make_loader(_samples(tmp_path, multilabel=True), _backbone(), 3, shuffle=False, seed=0))
    )
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (3, 6)
    assert batch["labels"][1].tolist() == [0, 1, 0, 0, 1, 0]


def test_images_of_different_sizes_are_padded_with_a_mask(tmp_path):
    wide = Sample("w", _image(tmp_path / "w.png", size=(128, 64)), "red", 0, task=0)
    tall = Sample("t", _image(tmp_path / "t.png", size=(64, 96)), "red", 1, task=0)
    gone = Sample("g", tmp_path / "absent.png", "red", 2, task=0, missing=2)  # dummy: never opened
    backbone = _backbone()
    batch = next(iter(make_loader([wide, tall, gone], backbone, 3, shuffle=False, seed=0)))
    alone = [
        backbone.image_processor(images=[Image.open(s.image)], return_tensors="pt") for s in (wide, tall)
    ]
    (h0, w0), (h1, w1) = (tuple(a["pixel_values"].shape[2:]) for a in alone)
    assert (h0, w0) != (h1, w1)  # the processor's rule: shortest edge 64, longest capped, multiples of 16
    assert batch["pixel_values"].shape == (3, 3, max(h0, h1, 64), max(w0, w1, 64))
    assert batch["pixel_mask"][0].sum() == h0 * w0 and batch["pixel_mask"][1].sum() == h1 * w1
    assert batch["pixel_mask"][2].sum() == 64 * 64  # the dummy is the backbone's square
    assert torch.equal(batch["pixel_values"][1, :, :h1, :w1], alone[1]["pixel_values"][0])
    assert bool((batch["pixel_values"][0, :, h0:] == 0).all()) and bool(
        (batch["pixel_values"][0, :, :, w0:] == 0).all()
    )


def test_shuffle_is_seeded_and_spares_the_global_rng(tmp_path):
    samples = _samples(tmp_path, n=12)
    backbone = _backbone()

    def order(seed):
        return [b["labels"].tolist() for b in make_loader(samples, backbone, 4, shuffle=True, seed=seed)]

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = order(7)
    assert torch.equal(torch.rand(1), expected_next)  # the global RNG was not consumed
    assert order(7) == first and order(8) != first
    assert sorted(x for b in first for x in b) == list(range(12))
    loader = make_loader(samples, backbone, 4, shuffle=True, seed=7)
    epochs = [[b["labels"].tolist() for b in loader] for _ in range(2)]
    assert epochs[0] == first and epochs[1] != first  # a new order each epoch, reproducibly


def test_cached_images_follow_file_changes(tmp_path):
    clear_caches()
    path = _image(tmp_path / "x.png", colour=(0, 0, 0))
    sample = Sample("x", path, "red", 0, task=0)
    backbone = _backbone()
    first = next(iter(make_loader([sample], backbone, 1, shuffle=False, seed=0)))["pixel_values"]
    Image.new("RGB", (64, 64), (255, 255, 255)).save(path, format="PNG", compress_level=0)
    second = next(iter(make_loader([sample], backbone, 1, shuffle=False, seed=0)))["pixel_values"]
    assert first.max() == -1.0 and second.min() == 1.0


def test_worker_processes(tmp_path):
    samples = _samples(tmp_path, n=8)
    backbone = _backbone()
    serial = [b["input_ids"] for b in make_loader(samples, backbone, 4, shuffle=True, seed=3)]
    parallel = [
        b["input_ids"] for b in make_loader(samples, backbone, 4, shuffle=True, seed=3, num_workers=2)
    ]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
