"""Batching (protocol.md §5): the backbone's processor, dummy inputs for missing modalities, labels.

A missing text becomes ``""`` ([CLS][SEP]); a missing image becomes the dummy image, normalised pixel values
all 1.0 with a full pixel mask at the backbone's square size, so it cannot leak the original aspect ratio.
Real images go through the backbone's ``ViltImageProcessorPil`` one by one; the batch is then padded
bottom-right with zeros and a zero pixel mask, as the processor pads a batch. Small processed images are cached
in memory so that later epochs and evaluations skip decoding.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

from delo.data.records import IMAGE_MISSING, TEXT_MISSING, DataError, Sample

DUMMY_TEXT = ""
_CACHE_MAX_ITEM_BYTES = 256 * 1024  # 64x64 images (48 KiB) are cached; 384-pixel ones (>= 1.7 MiB) are not
_CACHE_BUDGET_BYTES = 512 * 1024 * 1024
_image_cache: dict[tuple[str, str, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
_cache_bytes = 0
_token_caches: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], list[int]]] = weakref.WeakKeyDictionary()


def dummy_image(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel_values (3, size, size) all 1.0, pixel_mask (size, size) all 1): a white image, normalised."""
    return torch.ones(3, size, size), torch.ones(size, size, dtype=torch.long)


def _processor_key(processor: ViltImageProcessorPil) -> str:
    return f"{type(processor).__name__}:{processor.to_json_string()}"


def load_image(
    path: Path, processor: ViltImageProcessorPil, processor_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Processed (pixel_values (3, H, W), pixel_mask (H, W)) of one image file, cached when small."""
    global _cache_bytes
    try:
        stat = path.stat()
        key = (processor_key, str(path), stat.st_mtime_ns, stat.st_size)
        if key in _image_cache:
            return _image_cache[key]
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(
            f"{path}: unreadable image ({str(exc).splitlines()[0][:160]}). Restore it from the data set's source; a "
            "synthetic set under $DELO_CACHE is regenerated when its folder is deleted"
        ) from None
    out = processor(images=[rgb], return_tensors="pt")
    item = (out["pixel_values"][0].contiguous(), out["pixel_mask"][0].long().contiguous())
    size = item[0].numel() * item[0].element_size()
    if size <= _CACHE_MAX_ITEM_BYTES and _cache_bytes + size <= _CACHE_BUDGET_BYTES:
        _image_cache[key] = item
        _cache_bytes += size
    return item


def clear_caches() -> None:
    global _cache_bytes
    _image_cache.clear()
    _token_caches.clear()
    _cache_bytes = 0


def _token_cache(tokenizer: Any) -> dict[tuple[int, str], list[int]]:
    cache = _token_caches.get(tokenizer)
    if cache is None:
        cache = _token_caches[tokenizer] = {}
    return cache


def tokenize(tokenizer: Any, text: str, max_len: int) -> list[int]:
    """Token ids of one text with [CLS]/[SEP], truncated to ``max_len`` (memoised per tokenizer)."""
    cache = _token_cache(tokenizer)
    key = (max_len, text)
    if key not in cache:
        cache[key] = list(tokenizer(text, truncation=True, max_length=max_len)["input_ids"])
    return cache[key]


class SampleDataset(Dataset):
    """Per-sample token ids and processed image, dummies substituted by missing code, codes and label."""

    def __init__(self, samples: list[Sample], backbone: Any):
        self.samples = list(samples)
        self.tokenizer = backbone.tokenizer
        self.max_text_len = backbone.max_text_len
        self.processor = backbone.image_processor
        self.processor_key = _processor_key(backbone.image_processor)
        self.dummy = dummy_image(backbone.image_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        if s.missing == IMAGE_MISSING:
            pixel_values, pixel_mask = self.dummy
        else:
            pixel_values, pixel_mask = load_image(s.image, self.processor, self.processor_key)
        text = DUMMY_TEXT if s.missing == TEXT_MISSING else s.text
        return {
            "input_ids": tokenize(self.tokenizer, text, self.max_text_len),
            "pixel_values": pixel_values,
            "pixel_mask": pixel_mask,
            "missing": s.missing,
            "task": s.task,
            "label": s.label,
        }


class Collator:
    """Items -> the batch dict of the data contract (docs/architecture.md).

    Text is padded to the longest in the batch with the tokenizer's pad id on its padding side; images are
    padded bottom-right with zeros and a zero pixel mask (what the processor does for a batch).
    """

    def __init__(self, pad_token_id: int, padding_side: str, num_labels: int | None):
        self.pad_token_id = pad_token_id
        self.left = padding_side == "left"
        self.num_labels = num_labels

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = self._pad_text([it["input_ids"] for it in items])
        pixel_values, pixel_mask = self._pad_images(items)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),  # one segment
            "pixel_values": pixel_values,
            "pixel_mask": pixel_mask,
            "missing": torch.tensor([it["missing"] for it in items], dtype=torch.long),
            "task": torch.tensor([it["task"] for it in items], dtype=torch.long),
            "labels": self._labels([it["label"] for it in items]),
        }

    def _pad_text(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(x) for x in ids)
        rows, masks = [], []
        for x in ids:
            pad = length - len(x)
            rows.append([self.pad_token_id] * pad + x if self.left else x + [self.pad_token_id] * pad)
            masks.append([0] * pad + [1] * len(x) if self.left else [1] * len(x) + [0] * pad)
        return torch.tensor(rows, dtype=torch.long), torch.tensor(masks, dtype=torch.long)  # (B, L) each

    @staticmethod
    def _pad_images(items: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        shapes = {tuple(it["pixel_values"].shape) for it in items}
        if len(shapes) == 1:  # the common case (tiny, square): a plain copy
            return (
                torch.stack([it["pixel_values"] for it in items]),  # (B, 3, H, W)
                torch.stack([it["pixel_mask"] for it in items]),  # (B, H, W)
            )
        height = max(s[1] for s in shapes)
        width = max(s[2] for s in shapes)
        pixel_values = torch.zeros(len(items), 3, height, width)
        pixel_mask = torch.zeros(len(items), height, width, dtype=torch.long)
        for b, it in enumerate(items):
            _, h, w = it["pixel_values"].shape
            pixel_values[b, :, :h, :w] = it["pixel_values"]
            pixel_mask[b, :h, :w] = it["pixel_mask"]
        return pixel_values, pixel_mask

    def _labels(self, labels: list[int | tuple[int, ...]]) -> torch.Tensor:
        if not isinstance(labels[0], tuple):
            return torch.tensor(labels, dtype=torch.long)  # (B,) global class ids
        if not self.num_labels:
            raise ValueError("multi-label samples need num_labels (C_total) for the multi-hot labels")
        multi_hot = torch.zeros(len(labels), self.num_labels)  # (B, C_total)
        for b, ids in enumerate(labels):
            multi_hot[b, list(ids)] = 1.0
        return multi_hot


def make_loader(
    samples: list[Sample],
    backbone: Any,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    num_labels: int | None = None,
) -> DataLoader:
    """A DataLoader of contract batches.

    ``backbone`` needs ``tokenizer``, ``image_processor``, ``image_size`` (dummy side) and ``max_text_len``.
    Shuffling draws from the loader's own generator seeded with ``seed`` (never the global RNG, which ViLT's
    random patch order consumes). ``num_labels`` (C_total) defaults to the samples' own ``num_labels``.
    """
    if num_labels is None and samples:
        num_labels = samples[0].num_labels or None
    tok = backbone.tokenizer
    if tok.pad_token_id is None:
        raise ValueError("the backbone's tokenizer has no pad token")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        SampleDataset(samples, backbone),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        collate_fn=Collator(tok.pad_token_id, getattr(tok, "padding_side", "right"), num_labels),
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
