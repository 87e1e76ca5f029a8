"""Each comparator's reference protocol and its labelled switches (docs/methods.md, issue 24): training logits
(`head_logits`), MAP's classifier protocol (`head`, `train_pooler`), RebQ's `mode`, DualPrompt's E-prompt init,
read-out and head init, gradient clipping in the runner, MoRA's `targets`, the `+tkm` task inference of the
shared-expert methods, and a clear error for every new key's bad value."""

import pytest
import torch
from tiny_vilt import tiny_vilt

from delo.config import ConfigError, ModelConfig, RunConfig, load_config
from delo.methods import build_method
from delo.methods.base import ContinualMethod, MethodLoss, ParameterGroups
from delo.methods.heads import SharedMLPHead, TaskHeads

D = 32  # tiny_vilt hidden size
TEXT_LEN = 7


def make_batch(missing=(0, 1, 2, 0), seed=0, task=0, classes=3):
    g = torch.Generator().manual_seed(seed)
    b = len(missing)
    return {
        "input_ids": torch.randint(1, 99, (b, TEXT_LEN), generator=g),
        "attention_mask": torch.ones(b, TEXT_LEN, dtype=torch.long),
        "token_type_ids": torch.zeros(b, TEXT_LEN, dtype=torch.long),
        "pixel_values": torch.randn(b, 3, 32, 32, generator=g),
        "pixel_mask": torch.ones(b, 32, 32, dtype=torch.long),
        "missing": torch.tensor(missing),
        "task": torch.full((b,), task),
        "labels": classes * task + torch.arange(b) % classes,
    }


def make(method, tasks=1, keys=None, **section):
    """``method`` on the tiny ViLT with ``model.<method>`` = ``section`` and flat ``keys``; tasks of 3 classes."""
    cfg = ModelConfig(method=method, **(keys or {}), **({method: section} if section else {}))
    model = build_method(tiny_vilt(), RunConfig(model=cfg), multilabel=False)
    for k in range(tasks):
        torch.manual_seed(100 + k)
        model.begin_task(k, 3, 3 * k)
    return model


def train(model, k, steps=3):
    opt = torch.optim.AdamW(model.task_parameters(k), lr=1e-2)
    model.train()
    for s in range(steps):
        loss = model.training_loss(make_batch(seed=s, task=k), k)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    model.eval()


def task_blocks(heads):
    """The module that computes each task's columns: the per-task linear, or MAP's block of output rows."""
    return list(heads.heads) if isinstance(heads, TaskHeads) else list(heads.rows)


# -- head_logits: own | seen -----------------------------------------------------------------------------------

LOGIT_CASES = [
    ("map", {}),
    ("map", {"head": "linear"}),
    ("msp", {}),
    ("msp", {"head": "linear"}),
    ("l2p", {}),
    ("dualprompt", {}),
    ("rebq", {}),
    ("rank1_pool", {}),
    ("moe_lora", {}),
]


@pytest.mark.parametrize(("method", "section"), LOGIT_CASES)
@pytest.mark.parametrize("head_logits", ["own", "seen"])
def test_seen_logits_give_every_seen_task_gradient_and_own_only_the_current(method, section, head_logits):
    model = make(method, tasks=2, head_logits=head_logits, **section)
    outputs = {}

    def keep(j):
        def hook(module, args, out):
            out.retain_grad()
            outputs[j] = out

        return hook

    handles = [block.register_forward_hook(keep(j)) for j, block in enumerate(task_blocks(model.heads))]
    model.train()
    torch.manual_seed(0)
    model.training_loss(make_batch(task=1), 1).total.backward()
    for h in handles:
        h.remove()
    moved = {j for j, out in outputs.items() if out.grad is not None and bool(out.grad.abs().sum() > 0)}
    assert moved == ({0, 1} if head_logits == "seen" else {1})


def test_defaults_are_each_reference_protocol():
    cfg = ModelConfig()
    assert (cfg.map.head, cfg.map.head_logits, cfg.map.train_pooler) == ("mlp", "seen", True)
    assert (cfg.msp.head, cfg.msp.head_logits, cfg.msp.train_pooler) == ("mlp", "seen", True)
    assert cfg.l2p.head_logits == cfg.dualprompt.head_logits == cfg.rebq.head_logits == "own"
    assert (cfg.dualprompt.e_length, cfg.dualprompt.e_init, cfg.dualprompt.readout) == (5, "previous", "cls")
    assert cfg.dualprompt.max_grad_norm == cfg.l2p.max_grad_norm == 1.0
    assert cfg.rebq.mode == "release" and cfg.mora.targets == "model"
    assert (
        cfg.rank1_pool.task_inference == cfg.moe_lora.task_inference == cfg.pass_moe.task_inference == "heads"
    )


# -- MAP / MSP: trainable pooler and one MLP classifier over all classes -----------------------------------------


@pytest.mark.parametrize("method", ["map", "msp"])
def test_map_protocol_trains_the_pooler_and_the_shared_mlp_with_earlier_rows(method):
    model = make(method)
    assert isinstance(model.heads, SharedMLPHead)
    body = model.heads.body
    assert isinstance(body[0], torch.nn.Linear) and (body[0].in_features, body[0].out_features) == (D, 2 * D)
    assert isinstance(body[1], torch.nn.LayerNorm) and isinstance(body[2], torch.nn.GELU)
    assert torch.equal(model.heads.rows[0].bias, torch.zeros(3))
    train(model, 0)
    model.begin_task(1, 3, 3)
    pooler = model.vilt.pooler.dense
    params = {id(p) for p in model.task_parameters(1)}
    shared = [pooler.weight, pooler.bias, *body.parameters(), *model.heads.rows[0].parameters()]
    assert all(id(p) in params and p.requires_grad for p in shared)
    before = {n: t.detach().clone() for n, t in model.task_state(1).items()}
    model.train()
    model.zero_grad(set_to_none=True)
    model.training_loss(make_batch(task=1), 1).total.backward()
    for p in shared:
        assert p.grad is not None and bool(p.grad.abs().sum() > 0)
    train(model, 1)
    after = model.task_state(1)
    for name in (
        "shared.pooler.dense.weight",
        "head.body.0.weight",
        "head.rows.0.weight",
        "head.rows.1.weight",
    ):
        assert not torch.equal(before[name], after[name]), name


def test_map_uniform_protocol_keeps_the_pooler_frozen_and_per_task_heads():
    model = make("map", tasks=2, head="linear", head_logits="own", train_pooler=False)
    assert isinstance(model.heads, TaskHeads)
    assert not any(p.requires_grad for p in model.vilt.parameters())
    assert not any(n.startswith("shared.pooler") for n in model.task_state(1))
    assert not any(p.requires_grad for p in model.heads.heads[0].parameters())


# -- RebQ: release | paper ---------------------------------------------------------------------------------------


def rebq_prompts(model, queries):
    """Every pool's prompt at every prompted layer for fixed queries (B, d)."""
    with torch.no_grad():
        return [pool(queries, j) for pool in model._pools().values() for j in range(len(model.layers))]


def test_rebq_release_trains_components_at_task_0_only():
    model = make("rebq", components_per_task=3, length=4)
    train(model, 0)
    queries = torch.randn(5, D, generator=torch.Generator().manual_seed(4))
    at_task0 = rebq_prompts(model, queries)
    for k in (1, 2):
        model.begin_task(k, 3, 3 * k)
        model.train()
        model.zero_grad(set_to_none=True)
        model.training_loss(make_batch(task=k), k).total.backward()
        for pool in model._pools().values():
            for t in pool.task_tensors(k).values():
                assert (
                    t.requires_grad and t.grad is not None and not t.grad.any()
                )  # zero weight, zero gradient
        train(model, k)
        for pool in model._pools().values():
            for j in range(1, k + 1):
                assert all(not t.any() for t in pool.task_tensors(j).values())  # still exactly zero
        for a, b in zip(at_task0, rebq_prompts(model, queries), strict=True):
            assert torch.equal(a, b)  # the prompts are task 0's


def test_rebq_paper_grows_trainable_components_per_task():
    model = make("rebq", components_per_task=3, length=4, mode="paper")
    train(model, 0)
    queries = torch.randn(5, D, generator=torch.Generator().manual_seed(4))
    at_task0 = rebq_prompts(model, queries)
    model.begin_task(1, 3, 3)
    start = {n: t.detach().clone() for n, t in model._own(1).items()}
    assert all(t.any() for t in start.values())
    train(model, 1)
    assert any(not torch.equal(start[n], t) for n, t in model._own(1).items())
    assert any(not torch.equal(a, b) for a, b in zip(at_task0, rebq_prompts(model, queries), strict=True))


# -- DualPrompt / L2P: the port's protocol -----------------------------------------------------------------------


def test_dualprompt_new_e_prompt_starts_as_the_previous_one():
    model = make("dualprompt")
    train(model, 0)
    model.begin_task(1, 3, 3)
    assert torch.equal(model.e_prompts[1], model.e_prompts[0])
    assert model.e_prompts[1].requires_grad and not model.e_prompts[0].requires_grad
    assert model.e_prompts[1].data_ptr() != model.e_prompts[0].data_ptr()  # a copy, not the same tensor
    train(model, 1)
    assert not torch.equal(model.e_prompts[1], model.e_prompts[0])
    uniform = make("dualprompt", e_init="uniform")
    train(uniform, 0)
    uniform.begin_task(1, 3, 3)
    assert not torch.equal(uniform.e_prompts[1], uniform.e_prompts[0])


@pytest.mark.parametrize("readout", ["cls", "pooler"])
def test_dualprompt_reads_the_final_cls_or_the_pooler(readout):
    model = make("dualprompt", readout=readout)
    batch = make_batch()
    with torch.no_grad():
        torch.manual_seed(0)
        feature, _ = model._features(batch, None, batch["task"])
        torch.manual_seed(0)
        model.frozen_hidden(batch)  # the query pass draws a patch order first
        out, _ = model.hooks.run(batch, model.layer_prompts(batch["task"]))
    expected = out.last_hidden_state[:, 0] if readout == "cls" else out.pooler_output
    torch.testing.assert_close(feature, expected, atol=0, rtol=0)


@pytest.mark.parametrize("method", ["l2p", "dualprompt"])
def test_l2p_and_dualprompt_heads_are_trunc_normal_with_zero_bias(method):
    model = make(method, tasks=0)
    torch.manual_seed(0)
    model.begin_task(0, 500, 0)
    weight, bias = (p.detach() for p in model.heads.heads[0].parameters())
    assert torch.equal(bias, torch.zeros(500))
    assert abs(float(weight.std()) - 0.02) < 0.002 and float(weight.abs().max()) < 0.2
    assert model.max_grad_norm == 1.0
    default = make("rebq", tasks=0)  # every other method keeps nn.Linear's init
    torch.manual_seed(0)
    default.begin_task(0, 500, 0)
    assert default.heads.heads[0].bias.abs().max() > 0 and default.max_grad_norm is None


# -- gradient clipping in the runner ------------------------------------------------------------------------------


class _Linear(ContinualMethod):
    """One parameter w (2,) with loss 3 w_0 + 4 w_1: gradient (3, 4), norm 5."""

    def __init__(self, max_grad_norm):
        super().__init__(tiny_vilt(), multilabel=False)
        self.max_grad_norm = max_grad_norm
        self.w = torch.nn.Parameter(torch.zeros(2))

    def add_task(self, k):
        pass

    def adapter_groups(self, k):
        return ParameterGroups(main=[self.w])

    def state_tensors(self, k):
        return {"w": self.w}

    def training_loss(self, batch, task):
        return MethodLoss(total=self.w @ torch.tensor([3.0, 4.0]))

    def predict(self, batch, task_aware=False):
        raise NotImplementedError


@pytest.mark.parametrize(("max_grad_norm", "expected"), [(None, [-3.0, -4.0]), (1.0, [-0.6, -0.8])])
def test_runner_clips_the_task_gradient_to_max_grad_norm(monkeypatch, max_grad_norm, expected):
    """With plain SGD at lr 1 the one step is minus the gradient the optimiser sees: (3, 4) scaled to norm 1."""
    import delo.train as runner

    def sgd(model, task, cfg, total):
        opt = torch.optim.SGD(model.task_parameters(task), lr=1.0)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    monkeypatch.setattr(runner, "make_optimizer", sgd)
    model = _Linear(max_grad_norm)
    model.begin_task(0, 2, 0)
    cfg = load_config(None, ["train.epochs=1", "train.max_steps_per_task=1"])
    runner.train_task(model, [{"missing": torch.zeros(1, dtype=torch.long)}], 0, cfg, torch.device("cpu"), 0)
    torch.testing.assert_close(model.w.detach(), torch.tensor(expected), atol=1e-6, rtol=0)


# -- MoRA: the release's targets -----------------------------------------------------------------------------------


def test_mora_release_targets_adapt_query_and_value_only():
    model = make("mora", tasks=0, targets="qv")
    suffixes = {name.rsplit(".", 1)[-1] for name in model.site_names}
    assert suffixes == {"query", "value"}
    assert {n.rsplit(".", 1)[-1] for n in make("mora", tasks=0).site_names} == {"query", "key", "value"}


# -- +tkm: DeLo's Task-Key Memory picks the head of the shared-expert methods ---------------------------------------


@pytest.mark.parametrize("method", ["rank1_pool", "moe_lora", "pass_moe"])
@pytest.mark.parametrize("tkm_keys", ["per_modality", "shared"])
def test_tkm_variant_picks_the_head_the_keys_say(method, tkm_keys):
    """Equal keys: the shared-expert method assigns every sample the task the `frozen` floor (and so DeLo)
    infers, and keeps only that task's columns."""
    model = make(method, tasks=2, keys={"tkm_keys": tkm_keys}, task_inference="tkm")
    floor = make("frozen", tasks=2, keys={"tkm_keys": tkm_keys})
    keys = torch.randn(floor.tkm.keys.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        model.tkm.keys.copy_(keys)
        floor.tkm.keys.copy_(keys)
    batch = make_batch(missing=(0, 1, 2, 0, 0, 2))
    torch.manual_seed(0)
    inferred = floor.infer_task(batch)
    assert len(set(inferred.tolist())) == 2  # both tasks occur: the check is not a constant
    torch.manual_seed(0)
    pred = model.predict({k: v for k, v in batch.items() if k != "task"})
    assert torch.equal(pred.task, inferred)
    for i, k in enumerate(inferred.tolist()):
        outside = torch.ones(6, dtype=torch.bool)
        outside[model.head_span(k)] = False
        assert torch.isinf(pred.scores[i, outside]).all() and torch.isfinite(pred.scores[i, ~outside]).all()


@pytest.mark.parametrize("method", ["rank1_pool", "moe_lora", "pass_moe"])
def test_tkm_variant_moves_the_current_key_and_replays_it(method):
    model = make(method, task_inference="tkm")
    train(model, 0)
    assert model.tkm.keys[0].abs().sum() > 0  # the training passes moved key 0 (EMA)
    state = model.task_state(0)
    assert torch.equal(state["task_key"], model.tkm.keys[0])
    fresh = make(method, tasks=0, task_inference="tkm")
    torch.manual_seed(7)
    fresh.begin_task(0, 3, 0)
    fresh.load_task_state(0, state)
    assert torch.equal(fresh.tkm.keys, model.tkm.keys)
    assert "task_key" not in make(method).task_state(0)  # heads: no key, states unchanged


@pytest.mark.parametrize("method", ["rank1_pool", "moe_lora", "pass_moe"])
def test_tkm_variant_refuses_a_deeper_key_site_when_the_config_loads(method):
    sets = [f"model.method={method}", f"model.{method}.task_inference=tkm", "model.tkm_layer=1"]
    with pytest.raises(ConfigError, match=rf"model.{method}.task_inference=tkm .*model.tkm_layer=1"):
        load_config(None, sets)


def test_pass_moe_refuses_moe_loras_task_inference_key_when_the_config_loads():
    with pytest.raises(ConfigError, match="model.pass_moe.task_inference"):
        load_config(None, ["model.method=pass_moe", "model.moe_lora.task_inference=tkm"])


# -- every new key: a bad value names the key --------------------------------------------------------------------

BAD_VALUES = [
    ("model.map.head", "conv"),
    ("model.map.head_logits", "all"),
    ("model.map.train_pooler", "maybe"),
    ("model.msp.head", "conv"),
    ("model.msp.head_logits", "all"),
    ("model.msp.train_pooler", "2"),
    ("model.l2p.head_logits", "all"),
    ("model.l2p.max_grad_norm", "0"),
    ("model.dualprompt.head_logits", "all"),
    ("model.dualprompt.e_init", "zeros"),
    ("model.dualprompt.readout", "mean"),
    ("model.dualprompt.max_grad_norm", "-1"),
    ("model.rebq.head_logits", "all"),
    ("model.rebq.mode", "both"),
    ("model.mora.targets", "qkv"),
    ("model.rank1_pool.task_inference", "keys"),
    ("model.moe_lora.task_inference", "keys"),
    ("model.pass_moe.task_inference", "keys"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_a_bad_value_of_a_protocol_key_names_the_key(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [f"{key}={value}"])


def test_clipping_can_be_switched_off():
    cfg = load_config(None, ["model.dualprompt.max_grad_norm=null", "model.l2p.max_grad_norm=null"])
    assert cfg.model.dualprompt.max_grad_norm is None and cfg.model.l2p.max_grad_norm is None
