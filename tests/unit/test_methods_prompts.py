"""Prompt machinery and the prompt comparators (MAP, MSP, L2P, DualPrompt, RebQ) on the tiny random ViLT."""

import pytest
import torch
from tiny_vilt import tiny_vilt

from delo.config import ModelConfig, RunConfig
from delo.methods import build_method
from delo.methods.heads import TaskHeads
from delo.methods.prompts.hooks import PromptHooks, Prompts, paper_layers

D = 32  # tiny_vilt hidden size


def seeded(fn, *args, **kwargs):
    """ViLT draws its patch order from the global RNG: compare forwards under the same seed."""
    torch.manual_seed(1234)
    return fn(*args, **kwargs)


def make_batch(missing, seed=0, classes=3, offset=0, task=0):
    g = torch.Generator().manual_seed(seed)
    b = len(missing)
    ids = torch.randint(1, 99, (b, 7), generator=g)
    mask = torch.ones(b, 7, dtype=torch.long)
    mask[0, 5:] = 0  # one padded text
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "pixel_values": torch.randn(b, 3, 32, 32, generator=g),
        "pixel_mask": torch.ones(b, 32, 32, dtype=torch.long),
        "missing": torch.tensor(missing),
        "task": torch.full((b,), task),
        "labels": offset + torch.arange(b) % classes,
    }


def make(method, tasks=1, **section):
    cfg = ModelConfig(method=method, **({method: section} if section else {}))
    model = build_method(tiny_vilt(), RunConfig(model=cfg), multilabel=False)
    for k in range(tasks):
        torch.manual_seed(100 + k)
        model.begin_task(k, 3, 3 * k)
    return model


def train(model, k, steps=3, missing=(0, 1, 2, 0)):
    opt = torch.optim.AdamW(model.task_parameters(k), lr=1e-2)
    model.train()
    for s in range(steps):
        loss = model.training_loss(make_batch(list(missing), seed=s, offset=3 * k, task=k), k)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    model.eval()


def grads(model, batch, k=0):
    model.zero_grad(set_to_none=True)
    model.training_loss(batch, k).total.backward()


def backbone_params(model):
    return sum(p.numel() for p in model.vilt.parameters())


def head(k=0):
    return D * 3 + 3


# -- machinery -------------------------------------------------------------------------------------------------


def layer0_output(vilt, hooks, batch, prompts):
    """Layer 0's output hidden states on the real tokens only (prompt tokens dropped)."""
    seen = {}
    handle = vilt.encoder.layer[0].register_forward_hook(
        lambda m, a, o: seen.update(out=o[0])
    )  # returns None
    seeded(hooks.run, batch, prompts)
    handle.remove()
    return seen["out"]


def test_no_prompts_equals_the_plain_backbone():
    vilt = tiny_vilt()
    batch = make_batch([0, 1, 2])
    torch.manual_seed(1234)
    ref = vilt(
        **{
            k: batch[k]
            for k in ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask")
        }
    )
    out, n = seeded(PromptHooks(vilt, prefix=True).run, batch, Prompts())
    assert n == 0
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, atol=1e-6, rtol=0)


def test_prefix_equals_attending_to_the_tokens_it_stands_for():
    """Prefix keys/values K(LN(x)), V(LN(x)) give the real tokens the same layer-0 output as inserting x as tokens."""
    vilt = tiny_vilt()
    hooks = PromptHooks(vilt, prefix=True)
    batch = make_batch([0, 1, 2])
    x = torch.randn(3, 4, D)
    as_tokens = layer0_output(vilt, hooks, batch, Prompts(tokens={0: x}))
    real = torch.cat([as_tokens[:, :1], as_tokens[:, 1 + 4 :]], dim=1)
    attn = vilt.encoder.layer[0].attention.attention
    normed = vilt.encoder.layer[0].layernorm_before(x)
    prefix = (attn.key.base_layer(normed), attn.value.base_layer(normed))
    as_prefix = layer0_output(vilt, hooks, batch, Prompts(prefix={0: prefix}))
    assert as_prefix.shape == real.shape
    torch.testing.assert_close(as_prefix, real, atol=1e-5, rtol=1e-5)


def test_tokens_keep_cls_first_accumulate_or_replace_and_respect_padding():
    vilt = tiny_vilt()
    hooks = PromptHooks(vilt, prefix=False)
    batch = make_batch([0, 0])
    tokens = {0: torch.randn(2, 3, D), 1: torch.randn(2, 2, D)}
    out, n = seeded(hooks.run, batch, Prompts(tokens=tokens))
    assert n == 5 and out.last_hidden_state.shape[1] == 1 + 5 + batch_len(vilt, batch) - 1
    _, n = hooks.run(batch, Prompts(tokens=tokens, carry="replace"))
    assert n == 2
    edited = {**batch, "input_ids": batch["input_ids"].clone()}
    edited["input_ids"][0, 6] = 3  # a padded position: masked for the prompts too
    again, _ = seeded(hooks.run, edited, Prompts(tokens=tokens))
    torch.testing.assert_close(again.pooler_output[0], out.pooler_output[0], atol=1e-6, rtol=0)


def batch_len(vilt, batch):
    return vilt.embeddings(
        **{
            k: batch[k]
            for k in ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask")
        },
        inputs_embeds=None,
        image_embeds=None,
    )[0].shape[1]


def test_hidden_prompt_tokens_change_nothing():
    vilt = tiny_vilt()
    hooks = PromptHooks(vilt, prefix=False)
    batch = make_batch([0, 0])
    tokens = torch.randn(2, 4, D)
    visible = torch.tensor([[True, True, False, False]] * 2)
    first, _ = seeded(hooks.run, batch, Prompts(tokens={0: tokens}, visible={0: visible}))
    changed = tokens.clone()
    changed[:, 2:] += 5.0
    second, _ = seeded(hooks.run, batch, Prompts(tokens={0: changed}, visible={0: visible}))
    torch.testing.assert_close(first.pooler_output, second.pooler_output, atol=1e-6, rtol=0)
    shown, _ = seeded(hooks.run, batch, Prompts(tokens={0: changed}))
    assert not torch.allclose(shown.pooler_output, first.pooler_output, atol=1e-4)


def test_paper_layers_scale_to_the_backbone():
    assert paper_layers(None, range(6), 12) == (0, 1, 2, 3, 4, 5)
    assert paper_layers(None, range(6), 2) == (0,)
    assert paper_layers(None, range(8), 4) == (0, 1, 2)
    assert paper_layers((1,), range(6), 2) == (1,)


# -- shared contract checks ------------------------------------------------------------------------------------


PROTOCOLS = [
    ("map", {}),
    ("map", {"head": "linear", "head_logits": "own", "train_pooler": False}),
    ("msp", {}),
    ("msp", {"head": "linear", "head_logits": "own", "train_pooler": False}),
    ("l2p", {}),
    ("dualprompt", {}),
    ("rebq", {}),
    ("rebq", {"mode": "paper"}),
]


@pytest.mark.parametrize(("method", "section"), PROTOCOLS)
def test_state_round_trip_and_earlier_heads_frozen(method, section):
    model = make(method, **section)
    train(model, 0)
    model.begin_task(1, 3, 3)
    head0 = {n: p.detach().clone() for n, p in model.heads.named_tensors(0).items()}
    train(model, 1)
    after = model.heads.named_tensors(0)
    if isinstance(model.heads, TaskHeads):  # a per-task head is frozen once the next task begins
        assert all(torch.equal(head0[n], after[n]) for n in head0)
    else:  # MAP's one MLP classifier keeps training, old rows included
        assert not torch.equal(head0["head.rows.0.weight"], after["head.rows.0.weight"])
    fresh = make(method, tasks=0, **section)
    for k in range(2):
        torch.manual_seed(7)
        fresh.begin_task(k, 3, 3 * k)
        fresh.load_task_state(k, model.task_state(k))
    batch = make_batch([0, 1, 2, 0], seed=9)
    a, b = seeded(model.predict, batch), seeded(fresh.predict, batch)
    assert torch.equal(a.task, b.task)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-6, rtol=0)
    assert model.frozen_after_task is False


# -- MAP -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["input", "attention"])
def test_map_prompt_is_chosen_by_missing_type(position):
    model = make("map", position=position)
    grads(model, make_batch([1, 1, 1]))  # text missing only
    g = model.prompts.grad  # (3, layers, length, d)
    assert g[1].abs().sum() > 0
    assert g[0].abs().sum() == 0 and g[2].abs().sum() == 0


def test_map_shared_prompts_keep_training_and_counts():
    model = make("map", head="linear", train_pooler=False)
    train(model, 0)
    model.begin_task(1, 3, 3)
    before = model.prompts.detach().clone()
    train(model, 1)
    assert not torch.equal(before, model.prompts)
    layers = len(model.layers)
    prompts = 3 * layers * 16 * D
    counts = model.parameter_counts()
    assert counts == {
        "adapters_per_task": prompts,
        "trainable": prompts + head(),
        "total": backbone_params(model) + prompts + 2 * head(),
    }


def mlp_head(tasks):
    """MAP's classifier: Linear(d, 2d), LayerNorm(2d), then 3 rows of 2d + bias per task."""
    return D * 2 * D + 2 * D + 2 * 2 * D + tasks * (2 * D * 3 + 3)


def test_map_protocol_counts_the_pooler_and_the_shared_classifier():
    model = make("map", tasks=2)
    prompts, pooler = 3 * len(model.layers) * 16 * D, D * D + D
    assert model.parameter_counts() == {
        "adapters_per_task": prompts + pooler,
        "trainable": prompts + pooler + mlp_head(2),
        "total": backbone_params(model) + prompts + mlp_head(2),
    }


# -- MSP -------------------------------------------------------------------------------------------------------


def test_msp_prompts_follow_present_modalities_and_orthogonality_has_gradient():
    model = make("msp", ortho_weight=0.0)
    grads(model, make_batch([2, 2, 2]))  # image missing: only the text prompt is attended
    assert model.prompts.grad[1].abs().sum() > 0 and model.prompts.grad[0].abs().sum() == 0
    grads(model, make_batch([1, 1, 1]))  # text missing: only the image prompt
    assert model.prompts.grad[0].abs().sum() > 0 and model.prompts.grad[1].abs().sum() == 0
    from delo.methods.prompts.msp import orthogonality_loss

    model.zero_grad(set_to_none=True)
    orthogonality_loss(model.prompts).backward()
    assert model.prompts.grad[0].abs().sum() > 0 and model.prompts.grad[1].abs().sum() > 0
    layers = len(model.layers)
    assert model.parameter_counts()["trainable"] == 2 * layers * 16 * D + D * D + D + mlp_head(1)


# -- L2P -------------------------------------------------------------------------------------------------------


def test_l2p_selection_depends_on_input_and_key_loss_moves_selected_keys_only():
    model = make("l2p", pool_size=10, top_n=2, key_weight=1.0)
    batch = make_batch([0, 1, 2, 0, 1, 2], seed=3)
    _, idx = model.select(batch)
    assert len({tuple(sorted(r)) for r in idx.tolist()}) > 1  # different inputs pick different prompts
    model.zero_grad(set_to_none=True)
    _, aux = model._features(batch, train_task=0, task=None)
    aux["key"][1].backward()
    chosen = torch.zeros(10, dtype=torch.bool)
    chosen[idx.flatten()] = True
    key_grad = model.keys.grad.abs().sum(dim=1)
    assert (key_grad[chosen] > 0).all() and (key_grad[~chosen] == 0).all()
    counts = model.parameter_counts()
    assert counts["trainable"] == 10 * 5 * D + 10 * D + head()


def test_l2p_readout_reads_the_prompt_outputs():
    model = make("l2p")
    batch = make_batch([0, 1])
    feature, _ = seeded(model._features, batch, None, None)
    cos, idx = seeded(model.select, batch)
    out, n = model.hooks.run(batch, Prompts(tokens={0: model.pool[idx].reshape(2, -1, D)}))
    assert n == 5 * 5
    torch.testing.assert_close(feature, out.last_hidden_state[:, 1 : 1 + n].mean(dim=1))


# -- DualPrompt ------------------------------------------------------------------------------------------------


def test_dualprompt_key_loss_and_e_prompt_selection():
    model = make("dualprompt", tasks=2, e_init="uniform")  # two different E-prompts
    batch = make_batch([0, 1, 2, 0])
    model.zero_grad(set_to_none=True)
    _, aux = model._features(batch, train_task=1, task=None)
    aux["key"][1].backward()
    assert model.e_keys[1].grad.abs().sum() > 0 and model.e_keys[0].grad is None
    with torch.no_grad():
        query = model.frozen_hidden(batch)[:, 0]
        model.e_keys[1].copy_(query[0])  # sample 0 now matches task 1's key best
        model.e_keys[0].copy_(-query[1])  # ... and sample 1 certainly not task 0's
        expert = model.key_scores(query).argmax(dim=1)
        assert expert[0] == 1
        agnostic, _ = seeded(model._features, batch, None, None)
        routed, _ = seeded(model._features, batch, None, expert)
        other, _ = seeded(model._features, batch, None, 1 - expert)
    torch.testing.assert_close(agnostic, routed)
    assert not torch.allclose(agnostic, other, atol=1e-4)  # the E-prompt matters


def test_dualprompt_earlier_e_prompt_frozen_and_counts():
    model = make("dualprompt")
    train(model, 0)
    model.begin_task(1, 3, 3)
    e0, k0 = model.e_prompts[0].detach().clone(), model.e_keys[0].detach().clone()
    g = model.g_prompt.detach().clone()
    train(model, 1)
    assert torch.equal(e0, model.e_prompts[0]) and torch.equal(k0, model.e_keys[0])
    assert not torch.equal(g, model.g_prompt)  # shared G-prompt keeps training
    gl, el = len(model.g_layers), len(model.e_layers)
    assert model.parameter_counts()["trainable"] == gl * 2 * 5 * D + el * 2 * 5 * D + D + head()


# -- RebQ ------------------------------------------------------------------------------------------------------


def test_rebq_reconstruction_has_gradient_on_memory_only():
    model = make("rebq", components_per_task=3, length=4)
    batch = make_batch([0, 1, 2, 0])
    model.train()
    model.zero_grad(set_to_none=True)
    q_text, q_image, rec = model.reconstruct(batch, train=True)
    assert rec is not None
    rec.backward()
    assert model.memory.prompts[0].grad.abs().sum() > 0
    assert model.image.prompts[0].grad is None and model.text.prompts[0].grad is None


def test_rebq_reconstructed_query_replaces_the_missing_one():
    model = make("rebq", components_per_task=3, length=4)
    batch = make_batch([0, 1, 2, 0])
    with torch.no_grad():
        q_text, q_image, _ = seeded(model.reconstruct, batch, train=False)
        frozen = seeded(model.frozen_hidden, batch)
        # a different memory (not a rescaled one: tokens enter attention LayerNorm-ed) changes only reconstructed queries
        model.memory.prompts[0].add_(torch.randn_like(model.memory.prompts[0]))
        q_text2, q_image2, _ = seeded(model.reconstruct, batch, train=False)
    text_len = batch["input_ids"].shape[1]
    torch.testing.assert_close(q_text[[0, 2, 3]], frozen[[0, 2, 3], 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(q_image[[0, 1, 3]], frozen[[0, 1, 3], text_len], atol=1e-6, rtol=0)
    assert (q_text[1] - frozen[1, 0]).abs().max() > 1e-4 and (q_text2[1] - q_text[1]).abs().max() > 1e-4
    assert (q_image2[2] - q_image[2]).abs().max() > 1e-4
    torch.testing.assert_close(q_text2[[0, 2, 3]], q_text[[0, 2, 3]], atol=0, rtol=0)


def test_rebq_earlier_components_frozen_and_counts():
    model = make("rebq", components_per_task=3, length=4)
    train(model, 0)
    model.begin_task(1, 3, 3)
    before = {n: t.detach().clone() for n, t in model._own(0).items()}
    train(model, 1)
    assert all(torch.equal(before[n], t) for n, t in model._own(0).items())
    layers = len(model.layers)
    per_pool = layers * 3 * (4 * D + 2 * D)
    counts = model.parameter_counts()
    assert counts["trainable"] == 3 * per_pool + head()
    assert counts["total"] == backbone_params(model) + 2 * (3 * per_pool + head())
