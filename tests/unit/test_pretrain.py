"""Tiny-backbone pretraining: modality dropout builds the loader's exact inputs, and each objective reads only
the rows it should."""

import dataclasses

import numpy as np
import pytest
import torch

from delo import pretrain as P
from delo.backbone import load_backbone
from delo.config import ModelConfig
from delo.data.collate import make_loader
from delo.data.records import IMAGE_MISSING, TEXT_MISSING, Sample
from delo.data.synthetic import FILLER_WORDS, MC_KEYWORDS, jpeg_bytes, sample_pairs


@pytest.fixture(scope="module")
def tiny():
    return load_backbone(ModelConfig())


def test_content_words_are_single_tokens_and_filler_is_not_content(tiny):
    lookup = P.content_lookup(tiny.tokenizer)
    ids = tiny.tokenizer.convert_tokens_to_ids(list(P.CONTENT_WORDS))
    assert lookup[ids].tolist() == list(range(len(P.CONTENT_WORDS)))  # one token each, in order
    assert (lookup[tiny.tokenizer.convert_tokens_to_ids(list(FILLER_WORDS))] == -1).all()
    assert set(MC_KEYWORDS) <= set(P.CONTENT_WORDS)


def test_bow_targets_are_the_content_words_of_the_text(tiny):
    pairs = [(img, "the mango with harbor lantern and a day") for img, _ in sample_pairs(3, 1)]
    data = P.encode_pairs(pairs, tiny.tokenizer, tiny.image_processor, 40)
    hot = [P.CONTENT_WORDS[i] for i in data["bow"][0].nonzero().flatten().tolist()]
    assert sorted(hot) == ["harbor", "lantern", "mango"]
    flagged = tiny.tokenizer.convert_ids_to_tokens(data["input_ids"][0][data["content"][0]].tolist())
    assert flagged == ["mango", "harbor", "lantern"]


def test_drop_modality_builds_exactly_the_loaders_dummies(tiny, tmp_path):
    pairs = sample_pairs(5, 4)
    samples = []
    for i, (img, text) in enumerate(pairs):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(jpeg_bytes(np.asarray(img)))
        samples.append(Sample(uid=str(i), image=path, text=text, label=0, task=0))
    codes = torch.tensor([0, TEXT_MISSING, IMAGE_MISSING, TEXT_MISSING])
    forced = [dataclasses.replace(s, missing=int(c)) for s, c in zip(samples, codes)]
    loader_batch = next(iter(make_loader(forced, tiny, 4, shuffle=False, seed=0)))

    from PIL import Image

    images = [Image.open(s.image).convert("RGB") for s in samples]
    data = P.encode_pairs(
        [(im, s.text) for im, s in zip(images, samples)], tiny.tokenizer, tiny.image_processor, 40
    )
    tok = tiny.tokenizer
    ours = P.drop_modality(P.make_batch(data, torch.arange(4)), codes, tok.cls_token_id, tok.sep_token_id, 0)
    width = loader_batch["input_ids"].shape[1]
    assert torch.equal(ours["input_ids"][:, :width], loader_batch["input_ids"])
    assert torch.equal(ours["attention_mask"][:, :width], loader_batch["attention_mask"])
    assert not ours["attention_mask"][:, width:].any()
    assert torch.equal(ours["pixel_values"], loader_batch["pixel_values"])
    assert torch.equal(ours["pixel_mask"], loader_batch["pixel_mask"])
    assert not ours["maskable"][codes == TEXT_MISSING].any()  # no MLM target in a missing text


def test_pretrain_loss_scores_itm_on_complete_rows_only_and_has_gradient_everywhere(tiny):
    config = tiny.vilt.config
    vilt = P.ViltModel(config)
    heads = P.PretrainHeads(config)
    pairs = sample_pairs(7, 16)
    data = P.encode_pairs(pairs, tiny.tokenizer, tiny.image_processor, 40)
    tok = tiny.tokenizer
    ids = P.SpecialIds(tok.mask_token_id, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    cfg = P.PretrainConfig(dropout_prob=1.0)  # no complete row: ITM has nothing to score
    losses = P.pretrain_loss(
        vilt, heads, P.make_batch(data, torch.arange(16)), torch.Generator().manual_seed(0), ids, cfg
    )
    assert float(losses["itm"].detach()) == 0.0
    assert float(losses["bow"].detach()) > 0.0
    cfg = P.PretrainConfig()
    losses = P.pretrain_loss(
        vilt, heads, P.make_batch(data, torch.arange(16)), torch.Generator().manual_seed(0), ids, cfg
    )
    (losses["itm"] + losses["mlm"] + losses["bow"]).backward()
    assert heads.itm.weight.grad.abs().sum() > 0
    assert heads.bow.weight.grad.abs().sum() > 0
    assert vilt.embeddings.text_embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_draw_forms_shares():
    form = P.draw_forms(20_000, 0.5, torch.Generator().manual_seed(0))
    shares = torch.bincount(form, minlength=3).float() / 20_000
    assert torch.allclose(shares, torch.tensor([0.5, 0.25, 0.25]), atol=0.02)
