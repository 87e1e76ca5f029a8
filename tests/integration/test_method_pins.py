"""Every method's metrics on the tiny_test profile equal the pinned ones bit for bit (tests/pins): a change to
the method layer that is meant to keep behaviour keeps every number, down to the last float of the training
loss."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pins"))
import pin_methods  # noqa: E402

PINNED = pin_methods.load_pins()


def test_every_method_is_pinned():
    assert sorted(PINNED) == sorted(pin_methods.methods())


@pytest.mark.parametrize("method", sorted(PINNED))
def test_method_metrics_equal_the_pins(tmp_path, method):
    assert pin_methods.method_metrics(method, tmp_path) == PINNED[method]
