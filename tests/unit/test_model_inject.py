"""Target matching and wrapping (method.md §1), and the routing-context guard (method.md §3)."""

import pytest
import torch
from tiny_vilt import tiny_vilt

from delo.config import ModelConfig
from delo.methods.delo.layer import DeLoLinear
from delo.methods.delo.model import DeLoModel
from delo.vilt.context import ContextSlot
from delo.vilt.inject import inject

QKV = ("attention.attention.query", "attention.attention.key", "attention.attention.value")


def _wrap(name, linear):
    return DeLoLinear(linear, name, ContextSlot(), ModelConfig(E=4, r=2))


def test_default_targets_wrap_qkv_of_every_layer_sorted():
    vilt = tiny_vilt()
    originals = {n: m for n, m in vilt.named_modules() if n.endswith(QKV)}
    names = inject(vilt, QKV, _wrap)
    assert names == sorted(originals) and len(names) == 2 * 3
    for name in names:
        wrapped = vilt.get_submodule(name)
        assert isinstance(wrapped, DeLoLinear) and wrapped.base_layer is originals[name]


def test_suffix_matches_at_a_dot_boundary_only():
    vilt = tiny_vilt()
    assert inject(vilt, ["query"], _wrap) == [
        f"encoder.layer.{i}.attention.attention.query" for i in range(2)
    ]
    with pytest.raises(ValueError, match="no linear layer matches"):
        inject(tiny_vilt(), ["uery"], _wrap)


def test_no_match_echoes_targets_and_lists_candidates():
    with pytest.raises(ValueError) as err:
        inject(tiny_vilt(), ["attention.attention.qproj"], _wrap)
    message = str(err.value)
    assert "['attention.attention.qproj']" in message
    assert "encoder.layer.*.attention.attention.query" in message and "pooler.dense" in message


@pytest.mark.parametrize("target", ["dense", "output.dense"])
def test_bare_name_with_several_roles_is_refused(target):
    vilt = tiny_vilt()
    with pytest.raises(ValueError, match="ambiguous"):
        inject(vilt, [target], _wrap)
    assert not any(isinstance(m, DeLoLinear) for m in vilt.modules())  # nothing half-done


def test_double_injection_raises():
    vilt = tiny_vilt()
    inject(vilt, QKV, _wrap)
    with pytest.raises(ValueError, match="double injection"):
        inject(vilt, ["attention.attention.key"], _wrap)


def test_wrapped_layer_outside_context_raises():
    model = DeLoModel(tiny_vilt(), ModelConfig(E=4, r=2), multilabel=False)
    model.begin_task(0, 3, 0)
    with pytest.raises(RuntimeError, match="outside a routing context"):
        model.vilt(input_ids=torch.ones(1, 4, dtype=torch.long), pixel_values=torch.randn(1, 3, 32, 32))


def test_model_refuses_gradient_checkpointing_and_freezes_backbone():
    vilt = tiny_vilt()
    vilt.activation_checkpointing_enable()
    with pytest.raises(ValueError, match="checkpointing"):
        DeLoModel(vilt, ModelConfig(E=4, r=2), multilabel=False)
    model = DeLoModel(tiny_vilt().train(), ModelConfig(E=4, r=2), multilabel=False)
    model.begin_task(0, 3, 0)
    model.train()
    assert not model.vilt.training
    backbone = [p for n, p in model.vilt.named_parameters() if ".pools." not in n]
    assert backbone and not any(p.requires_grad for p in backbone)
