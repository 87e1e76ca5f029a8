"""One declaration per method: the config's method values, each method's keys, its class and the docs table all
come from delo.methods.registry."""

import inspect
from pathlib import Path

import pytest

from delo.config import ConfigError, ModelConfig, load_config
from delo.methods.base import ContinualMethod
from delo.methods.registry import METHOD_NAMES, docs_table, entry


def test_model_method_accepts_exactly_the_registered_names():
    for name in METHOD_NAMES:
        assert load_config(None, [f"model.method={name}"]).model.method == name
    with pytest.raises(ConfigError, match="model.method") as err:
        load_config(None, ["model.method=lora_magic"])
    for name in METHOD_NAMES:
        assert f"'{name}'" in str(err.value)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_entry_names_a_concrete_method_and_its_keys(name):
    e = entry(name)
    cls = e.model_class()
    assert issubclass(cls, ContinualMethod) and not inspect.isabstract(cls)
    section = e.section_class()
    if section is None:
        assert name not in ModelConfig.model_fields
    else:  # model.<name> holds that section, defaults included
        assert ModelConfig.model_fields[name].annotation is section
        assert getattr(ModelConfig(), name) == section()


def test_unknown_method_names_the_allowed_ones():
    with pytest.raises(
        KeyError,
        match="allowed: delo, frozen, rank1_pool, moe_lora, pass_moe, mora, map, msp, l2p, dualprompt, rebq",
    ):
        entry("nope")


def test_docs_table_is_the_registry():
    methods_md = (Path(__file__).resolve().parents[2] / "docs" / "methods.md").read_text()
    assert docs_table() in methods_md
