# Over 450 lines: data, objectives, evaluation and the card of one reproducible pretraining recipe.
"""Pretrain the shipped ``tiny`` ViLT on synthetic image-text pairs: ITM + masked LM as ViLT was, plus
per-modality contrastive terms on the pooled output (:func:`contrastive_loss`) so that each modality alone carries
what the pair shows (its objects), the way a real pretrained ViLT reads a title without an image.

The fused forward: every text is masked (15 %, BERT's 80/10/10 rule; all texts alike, so the masks cannot
give the ITM label away) and about half of the images are swapped for another sample's. Image-text matching (pooled output -> Linear(d, 2)) is scored on all pairs,
masked LM only on the matched ones, whose image is informative. Pairs come from
:func:`delo.data.synthetic.sample_pairs` with a pretraining seed: bags of single-coloured glyphs, never the
benchmark's classes (docs/benchmark.md).

The result is written with ``save_pretrained`` (ViltModel weights, config, tokenizer, image processor) plus
``card.json`` / ``CARD.md``: seed, command, steps, the weights' sha256 and held-out quality at init and after
training. ``python launch/pretrain_backbone.py`` reproduces it on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import tokenizers
import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn
from transformers import BertTokenizer, ViltConfig, ViltModel
from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil
from transformers.models.vilt.modeling_vilt import ViltMLMHead

from delo.atomic import atomic_write_text
from delo.data import synthetic
from delo.data.collate import DUMMY_TEXT, dummy_image
from delo.vilt.backbone import TINY_DIR, make_image_processor

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TINY_CONFIG = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 512,
    "image_size": 64,
    "patch_size": 16,
    "max_position_embeddings": 40,
    "modality_type_vocab_size": 2,
    "max_image_length": -1,
    # BERT-base's 0.02 at hidden 768 scaled to hidden 128 (0.02 * sqrt(768 / 128)). At 0.02 the text [CLS]
    # barely depends on the input (about 2 % across samples) and ITM sat at chance for 1,500 steps.
    "initializer_range": 0.05,
}


@dataclass(frozen=True)
class PretrainConfig:
    seed: int = 1234
    """Seed of the pairs, the init, masking and batching (the benchmark uses data.synthetic.seed, default 0)."""
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    train_pairs: int = 6000
    heldout_pairs: int = 512
    mask_prob: float = 0.15
    contrastive: float = 1.0
    """Weight of the per-modality contrastive terms (0: ITM + MLM only, the first shipped recipe)."""
    captions: int = 5
    """Captions per image, each naming its glyphs in another order; every step draws one per sample."""
    temperature: float = 0.1
    threads: int | None = None
    """Torch CPU threads (None: every core this process may use)."""


# ----------------------------------------------------------------------------------------------------------
# Vocabulary, tokenizer, image processor


def build_vocabulary(words: tuple[str, ...] | list[str]) -> dict[str, int]:
    """[PAD]=0 [UNK] [CLS] [SEP] [MASK], the world's words, then single characters and ##-continuations of
    letters and digits, so an unknown word splits into pieces instead of becoming [UNK]."""
    alnum = string.ascii_lowercase + string.digits
    tokens = [
        *SPECIAL_TOKENS,
        *(w.lower() for w in words),
        *alnum,
        *string.punctuation,
        *(f"##{c}" for c in alnum),
    ]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab


def build_tiny_tokenizer(words: tuple[str, ...] | list[str], max_len: int = 40) -> BertTokenizer:
    # vocab= a dict: transformers 5 silently ignores vocab_file= (environment.md §3)
    tokenizer = BertTokenizer(vocab=build_vocabulary(words), do_lower_case=True, model_max_length=max_len)
    assert tokenizer.vocab_size == len(build_vocabulary(words)), "tokenizer lost its vocabulary"
    return tokenizer


def build_tiny_image_processor() -> ViltImageProcessorPil:
    """64 × 64 stays 64 × 64 (shortest edge 64, multiples of 16), mean = std = 0.5."""
    return make_image_processor(TINY_CONFIG["image_size"], TINY_CONFIG["patch_size"])


# ----------------------------------------------------------------------------------------------------------
# Data


def encode_pairs(pairs, tokenizer, processor, max_len: int) -> dict[str, Tensor]:
    """All pairs as tensors, texts (N, K, max_len) for K captions per image (a plain string: K = 1), padded to
    ``max_len`` (trimmed per batch later); images processed once."""
    captions = [[text] if isinstance(text, str) else list(text) for _, text in pairs]
    k = len(captions[0])
    flat = [text for texts in captions for text in texts]
    enc = tokenizer(flat, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    special = torch.tensor(
        [
            tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
            for ids in enc["input_ids"].tolist()
        ]
    ).bool()
    pixels = [
        processor([img for img, _ in pairs[i : i + 256]], return_tensors="pt")
        for i in range(0, len(pairs), 256)
    ]
    return {
        "input_ids": enc["input_ids"].view(len(pairs), k, -1),
        "attention_mask": enc["attention_mask"].view(len(pairs), k, -1),
        "special": special.view(len(pairs), k, -1),
        "pixel_values": torch.cat([p["pixel_values"] for p in pixels]),
        "pixel_mask": torch.cat([p["pixel_mask"] for p in pixels]),
    }


def mask_tokens(
    input_ids: Tensor, maskable: Tensor, vocab_size: int, mask_id: int, prob: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """BERT masking: ``prob`` of the maskable tokens become targets; 80 % [MASK], 10 % random, 10 % kept.
    Returns (masked input ids, labels with -100 off target)."""
    targets = (torch.rand(input_ids.shape, generator=gen) < prob) & maskable
    labels = torch.where(targets, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=gen)
    random_ids = torch.randint(len(SPECIAL_TOKENS), vocab_size, input_ids.shape, generator=gen)
    masked = torch.where(targets & (roll < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    masked = torch.where(targets & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
    return masked, labels


def mismatch_index(batch_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(image index per sample, matched flag): about half the samples take another sample's image."""
    matched = torch.rand(batch_size, generator=gen) < 0.5
    offset = torch.randint(1, max(batch_size, 2), (batch_size,), generator=gen)
    other = (torch.arange(batch_size) + offset) % batch_size  # never the sample itself when B > 1
    return torch.where(matched, torch.arange(batch_size), other), matched


def make_batch(
    data: dict[str, Tensor], idx: Tensor, image_idx: Tensor | None = None, caption: Tensor | None = None
) -> dict[str, Tensor]:
    """Caption ``caption`` (B,) (default: the first) of samples ``idx``, trimmed to the batch's longest; images
    of ``image_idx`` (default ``idx``)."""
    cap = torch.zeros_like(idx) if caption is None else caption
    mask = data["attention_mask"][idx, cap]  # (B, max_len)
    length = int(mask.sum(1).max())
    img = idx if image_idx is None else image_idx
    return {
        "input_ids": data["input_ids"][idx, cap, :length],
        "attention_mask": mask[:, :length],
        "maskable": ~data["special"][idx, cap, :length],
        "pixel_values": data["pixel_values"][img],
        "pixel_mask": data["pixel_mask"][img],
    }


# ----------------------------------------------------------------------------------------------------------
# Model


class PretrainHeads(nn.Module):
    """ViLT's pretraining heads: ITM on the pooled output, MLM (transformers' ViltMLMHead) on text tokens."""

    def __init__(self, config: ViltConfig):
        super().__init__()
        self.itm = nn.Linear(config.hidden_size, 2)
        self.mlm = ViltMLMHead(config)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)  # contrastive projection of pooled


def vilt_forward(vilt: ViltModel, batch: dict[str, Tensor], input_ids: Tensor | None = None):
    return vilt(
        input_ids=batch["input_ids"] if input_ids is None else input_ids,
        attention_mask=batch["attention_mask"],
        token_type_ids=torch.zeros_like(batch["input_ids"]),
        pixel_values=batch["pixel_values"],
        pixel_mask=batch["pixel_mask"],
    )


def info_nce(anchor: Tensor, positive: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE: anchor row i (A, d) matches positive row targets[i] of (B, d); the rest are negatives."""
    a, p = F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1)
    logits = a @ p.T / temperature  # (A, B)
    loss = F.cross_entropy(logits, targets)
    if anchor.shape[0] == positive.shape[0]:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, targets.argsort()))
    return loss


def unimodal_batches(batch: dict[str, Tensor], empty_ids: Tensor) -> tuple[dict, dict]:
    """(image only, text only) versions of ``batch``, built as the loader builds missing inputs: the text
    becomes ``""`` ([CLS][SEP], ``empty_ids`` (2,)), the image the all-ones dummy with a full mask."""
    bsz = batch["input_ids"].shape[0]
    ids = empty_ids.expand(bsz, -1)
    image_only = {**batch, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
    pixels, pmask = dummy_image(batch["pixel_values"].shape[-1])
    text_only = {
        **batch,
        "pixel_values": pixels.expand(bsz, -1, -1, -1),
        "pixel_mask": pmask.expand(bsz, -1, -1),
    }
    return image_only, text_only


def pretrain_loss(
    vilt, heads, batch, gen: torch.Generator, mask_id: int, mask_prob: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(ITM loss over all pairs, MLM loss over the matched pairs, pooled output (B, d), matched (B,)), from one
    forward."""
    bsz = batch["input_ids"].shape[0]
    image_idx, matched = mismatch_index(bsz, gen)
    batch = {
        **batch,
        "pixel_values": batch["pixel_values"][image_idx],
        "pixel_mask": batch["pixel_mask"][image_idx],
    }
    # Mask every text, matched or not: masking only matched ones would leak the ITM label.
    masked, labels = mask_tokens(
        batch["input_ids"], batch["maskable"], vilt.config.vocab_size, mask_id, mask_prob, gen
    )
    labels = labels.masked_fill(~matched[:, None], -100)
    out = vilt_forward(vilt, batch, masked)
    itm = F.cross_entropy(heads.itm(out.pooler_output), matched.long())
    text = out.last_hidden_state[:, : masked.shape[1]]  # (B, L_t, d): text tokens come first
    logits = heads.mlm(text)  # (B, L_t, V)
    if not (labels != -100).any():  # no target in this batch
        return itm, logits.sum() * 0.0, out.pooler_output, matched
    mlm = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    return itm, mlm, out.pooler_output, matched


def contrastive_loss(
    vilt, heads, batch, fused: Tensor, matched: Tensor, empty_ids: Tensor, temperature: float
) -> Tensor:
    """Per-modality contrastive terms on the pooled output, so that each modality on its own carries what it
    shares with the other (the objects both show), and the fused output carries both:
    image only <-> text only, and each matched fused pair <-> its image only and its text only (all pairs of the
    batch as negatives)."""
    image_only, text_only = unimodal_batches(batch, empty_ids)
    z_v = heads.proj(vilt_forward(vilt, image_only).pooler_output)  # (B, d)
    z_t = heads.proj(vilt_forward(vilt, text_only).pooler_output)  # (B, d)
    z_c = heads.proj(fused[matched])  # (M, d) fused pairs whose image is their own
    rows = torch.arange(z_v.shape[0])
    terms = [info_nce(z_v, z_t, rows, temperature)]
    if matched.any():
        terms += [
            info_nce(z_c, z_v, rows[matched], temperature),
            info_nce(z_c, z_t, rows[matched], temperature),
        ]
    return torch.stack(terms).mean()


@torch.no_grad()
def query_vectors(vilt: ViltModel, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(q_v, q_t), each (B, d): masked means of the first layer's LayerNorm-ed input over image [CLS] +
    valid patches and over text tokens, the queries DeLo routes with (method.md §3)."""
    emb, mask = vilt.embeddings(
        batch["input_ids"],
        batch["attention_mask"],
        torch.zeros_like(batch["input_ids"]),
        batch["pixel_values"],
        batch["pixel_mask"],
        None,
        None,
        image_token_type_idx=1,
    )  # emb (B, L_t + 1 + N, d), mask (B, L_t + 1 + N)
    x = vilt.encoder.layer[0].layernorm_before(emb)
    length = batch["input_ids"].shape[1]
    text_m = mask[:, :length, None].to(x.dtype)  # (B, L_t, 1)
    image_m = mask[:, length:, None].to(x.dtype)  # (B, 1 + N, 1)
    q_t = (x[:, :length] * text_m).sum(1) / text_m.sum(1)
    q_v = (x[:, length:] * image_m).sum(1) / image_m.sum(1)
    return q_v, q_t


@torch.no_grad()
def evaluate(
    vilt, heads, data: dict[str, Tensor], mask_id: int, mask_prob: float, seed: int
) -> dict[str, float]:
    """Held-out ITM accuracy (each pair once matched and once with a random other pair's image, as in training),
    masked-token accuracy, and mean cos(q_v, q_t) for matched vs mismatched pairs. Seeded: same data, same score."""
    vilt.eval()
    gen = torch.Generator().manual_seed(seed)
    n = data["input_ids"].shape[0]
    other = (torch.arange(n) + torch.randint(1, n, (n,), generator=gen)) % n  # (n,) never the pair itself
    itm_hits = mlm_hits = mlm_total = 0
    cos_match, cos_mismatch = [], []
    for start in range(0, n, 128):
        idx = torch.arange(start, min(start + 128, n))
        batch = make_batch(data, idx)
        shifted = make_batch(data, idx, other[idx])
        for b, target in ((batch, 1), (shifted, 0)):
            itm_hits += int((heads.itm(vilt_forward(vilt, b).pooler_output).argmax(-1) == target).sum())
        masked, labels = mask_tokens(
            batch["input_ids"], batch["maskable"], vilt.config.vocab_size, mask_id, mask_prob, gen
        )
        logits = heads.mlm(vilt_forward(vilt, batch, masked).last_hidden_state[:, : masked.shape[1]])
        on = labels != -100
        mlm_hits += int((logits.argmax(-1)[on] == labels[on]).sum())
        mlm_total += int(on.sum())
        cos_match.append(F.cosine_similarity(*query_vectors(vilt, batch), dim=-1))
        cos_mismatch.append(F.cosine_similarity(*query_vectors(vilt, shifted), dim=-1))
    return {
        "itm_acc": itm_hits / (2 * n),
        "mlm_acc": mlm_hits / max(mlm_total, 1),
        "mlm_targets": mlm_total,
        "cos_matched": float(torch.cat(cos_match).mean()),
        "cos_mismatched": float(torch.cat(cos_mismatch).mean()),
    }


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup, then cosine decay to zero. The same curve as ``delo.train.lr_factor``, kept separate
    because the two round differently in the last bit (29 of 2,000 steps) and the shipped weights are
    bit-reproducible with this one."""
    warmup = max(1, int(cfg.warmup_frac * cfg.steps))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    vilt, heads, data, cfg: PretrainConfig, mask_id: int, empty_ids: Tensor, gen: torch.Generator
) -> dict[str, list[float]]:
    """``cfg.steps`` AdamW steps over shuffled epochs; returns the mean losses per 100 steps."""
    params = [*vilt.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    n = data["input_ids"].shape[0]
    order, cursor = torch.randperm(n, generator=gen), 0
    sums, curves = torch.zeros(3), {"itm": [], "mlm": [], "contrastive": []}
    vilt.train()
    for step in range(cfg.steps):
        if cursor + cfg.batch_size > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor : cursor + cfg.batch_size]
        batch = make_batch(
            data, idx, caption=torch.randint(data["input_ids"].shape[1], idx.shape, generator=gen)
        )
        cursor += cfg.batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        itm, mlm, fused, matched = pretrain_loss(vilt, heads, batch, gen, mask_id, cfg.mask_prob)
        con = (
            contrastive_loss(vilt, heads, batch, fused, matched, empty_ids, cfg.temperature)
            if cfg.contrastive > 0
            else itm.new_zeros(())
        )
        opt.zero_grad(set_to_none=True)
        (itm + mlm + cfg.contrastive * con).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sums += torch.stack([itm.detach(), mlm.detach(), con.detach()])
        if (step + 1) % 100 == 0 or step == cfg.steps - 1:
            span = (step % 100) + 1
            for name, total in zip(curves, sums.tolist(), strict=True):
                curves[name].append(round(total / span, 4))
            sums.zero_()
    vilt.eval()
    return curves


# ----------------------------------------------------------------------------------------------------------
# The whole run


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pretrain_tiny(
    out_dir: str | Path = TINY_DIR, cfg: PretrainConfig = PretrainConfig(), command: str = ""
) -> dict:
    """Pretrain tiny ViLT and write it to ``out_dir``; returns the card (also saved as card.json)."""
    started = time.perf_counter()
    threads = cfg.threads or available_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)  # init; ViLT's patch shuffling also draws from this RNG (environment.md §3)
    gen = torch.Generator().manual_seed(cfg.seed)  # batches, masks, mismatches

    tokenizer = build_tiny_tokenizer(synthetic.WORLD_WORDS, TINY_CONFIG["max_position_embeddings"])
    processor = build_tiny_image_processor()
    config = ViltConfig(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, **TINY_CONFIG)
    vilt, heads = ViltModel(config), PretrainHeads(config)

    pairs = synthetic.sample_captioned(cfg.seed, cfg.train_pairs + cfg.heldout_pairs, cfg.captions)
    data = encode_pairs(pairs, tokenizer, processor, config.max_position_embeddings)
    train_data = {k: v[: cfg.train_pairs] for k, v in data.items()}
    heldout = {k: v[cfg.train_pairs :] for k, v in data.items()}
    mask_id = tokenizer.mask_token_id

    at_init = evaluate(vilt, heads, heldout, mask_id, cfg.mask_prob, cfg.seed + 1)
    train_started = time.perf_counter()
    empty_ids = tokenizer(DUMMY_TEXT, return_tensors="pt")["input_ids"][0]  # (2,) [CLS][SEP]
    curves = train(vilt, heads, train_data, cfg, mask_id, empty_ids, gen)
    train_s = time.perf_counter() - train_started
    trained = evaluate(vilt, heads, heldout, mask_id, cfg.mask_prob, cfg.seed + 1)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vilt.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    card = {
        "name": "tiny",
        "command": command,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "pretrain": asdict(cfg) | {"threads": threads},
        "objectives": "ITM (pooled -> Linear(d,2), ~50% of images swapped within the batch) + MLM (15%, 80/10/10 "
        "on every text, scored on matched pairs) + per-modality contrastive InfoNCE on the pooled output "
        f"(weight {cfg.contrastive}, temperature {cfg.temperature}, shared linear projection): image only "
        "(text '') <-> text only (all-ones dummy image), and each matched fused pair <-> its image only and its "
        "text only, the batch as negatives; AdamW with warmup + cosine decay, "
        f"init std {TINY_CONFIG['initializer_range']}",
        "evaluation": "held-out pairs, unmasked text for ITM; each pair scored matched and with a random other "
        "held-out pair's image; masked-token accuracy with seeded 15% masks; cos over the same matched and "
        "mismatched pairs",
        "data": f"delo.data.synthetic.sample_captioned({cfg.seed}, {cfg.train_pairs + cfg.heldout_pairs}, "
        f"{cfg.captions}) (pairs version {synthetic.PAIRS_VERSION}): first {cfg.train_pairs} images train (one "
        f"of their {cfg.captions} captions drawn per step), last {cfg.heldout_pairs} held out (first caption)",
        "config": {**TINY_CONFIG, "vocab_size": config.vocab_size},
        "vocab_size": tokenizer.vocab_size,
        "parameters": sum(p.numel() for p in vilt.parameters()),
        "weights_sha256": sha256_file(out / "model.safetensors"),
        "quality": {"pretrained": trained, "init": at_init},
        "loss_per_100_steps": curves,
        "train_wall_s": round(train_s, 1),
        "total_wall_s": round(time.perf_counter() - started, 1),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
    }  # fmt: skip
    write_card(out, card)
    return card


def card_markdown(card: dict) -> str:
    q, q0 = card["quality"]["pretrained"], card["quality"]["init"]
    rows = [
        ("ITM accuracy", "itm_acc"),
        ("masked-token accuracy", "mlm_acc"),
        ("cos(q_v, q_t), matched", "cos_matched"),
        ("cos(q_v, q_t), mismatched", "cos_mismatched"),
    ]
    table = "\n".join(f"| {label} | {q0[key]:.3f} | {q[key]:.3f} |" for label, key in rows)
    c = card["config"]
    return f"""# tiny ViLT

A small `transformers` ViltModel, briefly pretrained on synthetic image-text pairs:
hidden {c["hidden_size"]}, {c["num_hidden_layers"]} layers, {c["num_attention_heads"]} heads, intermediate \
{c["intermediate_size"]}, image {c["image_size"]}, patch {c["patch_size"]}, text {c["max_position_embeddings"]}, \
{card["parameters"]:,} parameters, its own WordPiece vocabulary of {card["vocab_size"]} tokens.

- Objectives: {card["objectives"]}.
- Data: {card["data"]}. No pair shows a benchmark class (docs/benchmark.md).
- Reproduce: `{card["command"]}` ({card["steps"]} steps, seed {card["seed"]}, \
{card["pretrain"]["threads"]} threads; training took {card["train_wall_s"]} s; bit-reproducible for the same \
thread count).
- Weights: `model.safetensors`, sha256 `{card["weights_sha256"]}`.
- Load: `delo.vilt.backbone.load_backbone(ModelConfig(backbone="tiny"))`.
{probe_markdown(card.get("probe"))}
Held-out pretraining quality, {card["pretrain"]["heldout_pairs"]} pairs ({card["evaluation"]}):

| measure | at init | pretrained |
|---|---|---|
{table}

q_v / q_t are the masked means of the first layer's LayerNorm-ed input over image [CLS] + patches and over
text tokens, the queries DeLo routes with. No objective asks these layer-0 means to align, so matched and
mismatched pairs stay close on them; relating them is the job of DeLo's alignment loss.
Most words of a synthetic text are filler words drawn uniformly from 40, which caps masked-token accuracy.
"""


def probe_markdown(probe: dict | None) -> str:
    if probe is None:
        return "\nLinear probe: not run (`python launch/pretrain_backbone.py --probe-only`).\n"
    classes = probe.get("classes")
    chance = f"chance {100 / classes:.1f} %" if classes else "all tasks"
    rows = [(f"all {classes or ''} classes ({chance})".replace("  ", " "), probe["scores"])]
    if "per_task" in probe:
        rows.append(("per task, its own 4 classes (chance 25 %)", probe["per_task"]))
    table = "\n".join(
        f"| {name} | {s['complete']:.1f} | {s['image_only']:.1f} | {s['text_only']:.1f} | "
        f"{s['as_run']:.1f} |" if "as_run" in s else
        f"| {name} | {s['complete']:.1f} | {s['image_only']:.1f} | {s['text_only']:.1f} | - |"
        for name, s in rows
    )  # fmt: skip
    return f"""
Linear probe (`delo/tools/probe.py`: frozen pooled output, {probe["split"]}). Evidence ceilings per task: \
complete 100 %, one modality about 74 %, as run about 82 %:

| probe | complete | image only | text only | as run |
|---|---|---|---|---|
{table}
"""


def write_card(out_dir: str | Path, card: dict) -> None:
    out = Path(out_dir)
    atomic_write_text(out / "card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(out / "CARD.md", card_markdown(card))
