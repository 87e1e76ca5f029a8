"""ViLT backbones: the shipped ``tiny``, a hub id such as ``dandelin/vilt-b32-mlm``, or a local folder.

Every backbone comes back frozen (``requires_grad`` False, eval mode) with its tokenizer (vocabulary size
checked against the model after every load: transformers 5 can silently hand back a 5-token tokenizer) and a
``ViltImageProcessorPil`` (never ``ViltImageProcessor``, which falls back without torchvision).

Nothing here downloads behind the user's back: a hub id is looked up in the local Hugging Face cache first,
and when it is missing offline the error says how to fetch it (environment.md §4), before any training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, ViltConfig, ViltModel
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling
from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

from delo.config import ConfigError, ModelConfig

TINY_NAME = "tiny"
TINY_DIR = Path(__file__).resolve().parent / "assets" / "tiny_vilt"
VILT_B32 = "dandelin/vilt-b32-mlm"

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
PROCESSOR_FILE = "preprocessor_config.json"
# What a hub snapshot needs; pytorch_model.bin only when the repo has no safetensors.
_DOWNLOAD_PATTERNS = ("*.json", "*.txt", "*.safetensors", "pytorch_model.bin")


class BackboneError(ConfigError):
    """The backbone named by ``model.backbone`` cannot be loaded (missing weights, folder or files)."""


@dataclass
class Backbone:
    vilt: ViltModel
    """Frozen (requires_grad False), eval mode."""
    tokenizer: PreTrainedTokenizerBase
    """Vocabulary size equal to ``vilt.config.vocab_size`` (checked on load)."""
    image_processor: ViltImageProcessorPil
    image_size: int
    """Square side of the dummy image: 64 for tiny, 384 for ViLT-B/32, ``data.square`` when set."""
    max_text_len: int
    """Text truncation length (``model.max_text_len``); the position table covers it."""
    name: str


# ----------------------------------------------------------------------------------------------------------
# Finding the files


def missing_weights_message(name: str, reason: str) -> str:
    """The offline error of environment.md §4, naming ``model.backbone`` and the ways to get the weights."""
    repo = name if _looks_like_hub_id(name) else VILT_B32
    return (
        f"model.backbone={name!r}: {reason}\n"
        "No download is attempted offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE). To get the real ViLT weights:\n"
        f"  1. On a connected machine, run `hf download {repo}` (the hf CLI of huggingface_hub) or\n"
        f'     `huggingface_hub.snapshot_download("{repo}")`. The repo has config, weights, tokenizer and\n'
        "     preprocessor files.\n"
        "  2. Copy ~/.cache/huggingface (or the downloaded folder) to this machine.\n"
        "  3. Point HF_HOME at the cache, or set model.backbone to the folder.\n"
        f"Or use model.backbone={TINY_NAME!r}, the small ViLT shipped with delo."
    )


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) <= 2
        and all(parts)
        and not name.startswith((".", "~"))
        and "\\" not in name
        and not any(p in {".", ".."} for p in parts)
    )


def _missing_files(folder: Path) -> list[str]:
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES[::2]))
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    return missing


def resolve_backbone(name: str, cache_dir: str | Path | None = None) -> Path:
    """The local folder holding backbone ``name`` (``tiny``, a folder, or a hub id in the HF cache).

    A hub id is taken from the local cache (``cache_dir``, default ``$HF_HOME/hub``); only when the hub is
    not switched off is it downloaded, as transformers would. Raises BackboneError when anything is missing.
    """
    if name == TINY_NAME:
        folder = TINY_DIR
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser().resolve()
    elif not _looks_like_hub_id(name):
        raise BackboneError(missing_weights_message(name, f"no such folder {Path(name).expanduser()}"))
    else:
        folder = _hub_snapshot(name, cache_dir)
    missing = _missing_files(folder)
    if missing and name == TINY_NAME:
        raise BackboneError(
            f"model.backbone='tiny': {folder} lacks {', '.join(missing)} (a broken install?); "
            "regenerate it with `python launch/pretrain_backbone.py`"
        )
    if missing:
        raise BackboneError(missing_weights_message(name, f"{folder} lacks {', '.join(missing)}"))
    return folder


def _hub_snapshot(repo_id: str, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if _offline():
        from huggingface_hub import constants

        where = cache_dir or constants.HF_HUB_CACHE
        raise BackboneError(
            missing_weights_message(repo_id, f"the weights are not in the local Hugging Face cache {where}")
        )
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=list(_DOWNLOAD_PATTERNS)))
    except (
        OSError,
        ValueError,
    ) as exc:  # network, auth, unknown repo (hub errors are OSErrors): not available
        raise BackboneError(missing_weights_message(repo_id, f"download failed ({exc})")) from None


def check_backbone_available(name: str) -> None:
    """Raise BackboneError (a ConfigError) with download instructions unless ``name`` can be loaded."""
    resolve_backbone(name)


# ----------------------------------------------------------------------------------------------------------
# Image processors


class SquareViltImageProcessorPil(ViltImageProcessorPil):
    """ViLT's processor with a forced square resize (``data.square``, the authors' 384 × 384).

    ``size`` is ``{"height": s, "width": s}``; everything else (rescale, mean/std, padding, pixel mask) is
    ViLT's own. The aspect ratio is not kept, as in the reference code.
    """

    def resize(self, image, size, resample=None, size_divisor=None):
        if size.height and size.width:
            return PilBackend.resize(self, image, size, resample=resample)
        return super().resize(image, size, resample, size_divisor)


def make_image_processor(shortest_edge: int, size_divisor: int) -> ViltImageProcessorPil:
    """ViLT's rule from explicit parameters: shortest edge, longest <= 1333/800 of it, multiples of
    ``size_divisor``, bicubic, /255, mean = std = 0.5, batch padding with a pixel mask."""
    return ViltImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": shortest_edge},
        size_divisor=size_divisor,
        resample=PILImageResampling.BICUBIC,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pad=True,
    )


def square_image_processor(processor: ViltImageProcessorPil, side: int) -> SquareViltImageProcessorPil:
    """A copy of ``processor`` that resizes every image to ``side`` × ``side``."""
    params = processor.to_dict()
    params.pop("image_processor_type", None)
    params["size"] = {"height": side, "width": side}
    return SquareViltImageProcessorPil(**params)


def _load_image_processor(folder: Path, patch_size: int, data_square: int | None) -> ViltImageProcessorPil:
    if (folder / PROCESSOR_FILE).is_file():
        processor = ViltImageProcessorPil.from_pretrained(folder)
    else:  # ViLT-B/32's rule: shortest edge 384, longest <= 640, multiples of 32
        processor = make_image_processor(384, 32)
    if data_square is None:
        return processor
    if data_square % patch_size:
        raise BackboneError(
            f"data.square={data_square} must be a multiple of the backbone's patch size {patch_size}"
        )
    return square_image_processor(processor, data_square)


def _square_side(processor: ViltImageProcessorPil, config: ViltConfig) -> int:
    size = processor.size
    side = size.height if getattr(size, "height", None) else getattr(size, "shortest_edge", None)
    return int(side or config.image_size)


# ----------------------------------------------------------------------------------------------------------
# Loading


def load_tokenizer(folder: Path, vocab_size: int, name: str) -> PreTrainedTokenizerBase:
    """The folder's tokenizer; BackboneError unless its vocabulary has ``vocab_size`` entries."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.vocab_size != vocab_size:
        raise BackboneError(
            f"model.backbone={name!r}: the tokenizer in {folder} has {tokenizer.vocab_size} tokens but the model "
            f"expects {vocab_size} (a tokenizer that silently lost its vocabulary?)"
        )
    return tokenizer


def freeze(vilt: ViltModel) -> ViltModel:
    vilt.requires_grad_(False)
    return vilt.eval()


def load_backbone(model_cfg: ModelConfig, data_square: int | None = None) -> Backbone:
    """Load ``model_cfg.backbone`` frozen, with tokenizer and image processor; BackboneError when missing.

    ``model_cfg.max_text_len`` above the position table interpolates the table (frozen); ``data_square``
    forces square images of that side.
    """
    name = model_cfg.backbone
    folder = resolve_backbone(name)
    vilt = ViltModel.from_pretrained(folder, dtype=torch.float32)
    tokenizer = load_tokenizer(folder, vilt.config.vocab_size, name)
    processor = _load_image_processor(folder, _patch_size(vilt.config), data_square)
    if model_cfg.max_text_len > vilt.config.max_position_embeddings:
        interpolate_text_positions(vilt, model_cfg.max_text_len)
    tokenizer.model_max_length = model_cfg.max_text_len
    return Backbone(
        vilt=freeze(vilt),
        tokenizer=tokenizer,
        image_processor=processor,
        image_size=_square_side(processor, vilt.config),
        max_text_len=model_cfg.max_text_len,
        name=name,
    )


def _patch_size(config: ViltConfig) -> int:
    patch = config.patch_size
    return int(patch if isinstance(patch, int) else patch[0])


# ----------------------------------------------------------------------------------------------------------
# Longer text: stretch the position table


@torch.no_grad()
def interpolate_text_positions(vilt: ViltModel, new_len: int) -> None:
    """Stretch the text position table linearly along positions to ``new_len`` rows (protocol.md §5).

    Row i of the new table sits at old position x = i·(L−1)/(new_len−1): the first and last rows are the
    old ones exactly, every other row lies between its two old neighbours (computed in float64, so rounding
    back to the table's dtype cannot leave that interval). The table stays frozen; the config length and the
    ``position_ids`` / ``token_type_ids`` buffers follow. Never shrinks.
    """
    text = vilt.embeddings.text_embeddings
    old = text.position_embeddings.weight
    old_len = old.shape[0]
    if new_len == old_len:
        return
    if new_len < old_len:
        raise ValueError(f"interpolate_text_positions only stretches: {new_len} < table length {old_len}")
    steps = torch.arange(new_len, dtype=torch.float64) * (old_len - 1)
    lo = torch.div(steps, new_len - 1, rounding_mode="floor").long()  # (new_len,) left neighbour
    frac = (steps - lo * (new_len - 1)) / (new_len - 1)  # (new_len,) in [0, 1)
    hi = (lo + 1).clamp(max=old_len - 1)
    table = old.double()
    stretched = table[lo] + frac[:, None] * (table[hi] - table[lo])  # (new_len, d)

    # from_pretrained, not nn.Embedding(...): no random init, so the global torch RNG is left alone
    text.position_embeddings = nn.Embedding.from_pretrained(
        stretched.to(old.dtype), freeze=not old.requires_grad
    )
    text.position_ids = torch.arange(new_len, device=old.device).expand((1, -1))
    text.token_type_ids = torch.zeros((1, new_len), dtype=torch.long, device=old.device)
    vilt.config.max_position_embeddings = new_len


# ----------------------------------------------------------------------------------------------------------
# Random backbones for tests


def _tiny_vocab_size() -> int:
    import json

    config = TINY_DIR / "config.json"
    return json.loads(config.read_text())["vocab_size"] if config.is_file() else 99


def build_random_vilt(*, seed: int = 0, **config_overrides) -> ViltModel:
    """A small random ViLT (frozen, eval) for tests, built from a config without any download.

    Defaults: hidden 32, 2 layers, 2 heads, intermediate 64, image 64, patch 16, text 40, and tiny's
    vocabulary size, so tiny's tokenizer and image processor fit. ``seed`` fixes the init without touching
    the global torch RNG.
    """
    params = {
        "vocab_size": _tiny_vocab_size(),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 64,
        "patch_size": 16,
        "max_position_embeddings": 40,
        "modality_type_vocab_size": 2,
        "max_image_length": -1,
    }
    params.update(config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vilt = ViltModel(ViltConfig(**params))
    return freeze(vilt)


def write_random_backbone(folder: str | Path, *, seed: int = 0, **config_overrides) -> Path:
    """Save a random ViLT with tiny's tokenizer and image processor to ``folder`` (usable as model.backbone).

    The vocabulary size defaults to tiny's; overriding it needs a matching tokenizer, so it is refused.
    """
    if "vocab_size" in config_overrides:
        raise ValueError("write_random_backbone reuses tiny's tokenizer: vocab_size cannot be overridden")
    folder = Path(folder)
    build_random_vilt(seed=seed, **config_overrides).save_pretrained(folder)
    load_tokenizer(TINY_DIR, _tiny_vocab_size(), TINY_NAME).save_pretrained(folder)
    ViltImageProcessorPil.from_pretrained(TINY_DIR).save_pretrained(folder)
    return folder
