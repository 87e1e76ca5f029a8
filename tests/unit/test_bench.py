"""Smoke test of the performance figures: ``delo-bench --quick`` (in-process) writes every figure with its
fields. launch/bench.py itself runs once in tests/integration/test_launchers.py.

No timing assertions: the figures are measured on shared machines; this only checks that each one runs.
"""

import json

import pytest

from delo.cli import bench
from delo.tools.bench import FIGURES

pytestmark = pytest.mark.xdist_group("bench")  # one worker builds the module's costly fixture, once

FIELDS = {"value", "target", "met"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert bench(["--quick", "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow  # the quick run takes about 10-30 s on 2 shared cores
def test_every_figure_is_written(quick):
    assert set(FIGURES) <= set(quick)
    for name in FIGURES:
        figure = quick[name]
        assert set(figure) >= FIELDS, name
        assert isinstance(figure["value"], (int, float)), name
        assert figure["met"] in (True, False, None), name
        assert (figure["target"] is None) == (figure["met"] is None), name


@pytest.mark.slow
def test_context_and_machine(quick):
    assert quick["quick"] is True
    assert {"cpu_count", "torch", "threads"} <= set(quick["machine"])
    assert "consistency_cost" in quick and 0 < quick["consistency_cost"]["complete_fraction"] < 1
    assert {"samples_per_s", "peak_rss_bytes", "gpu"} <= set(quick["context"])
    assert quick["context"]["peak_rss_bytes"] > 0
    if quick["context"]["gpu"] is None:
        assert quick["context"]["gpu_note"]
    assert quick["checkpoint_ratio"]["full_state_dict_bytes"] > quick["checkpoint_ratio"]["task_file_bytes"]


def test_unknown_figure_exits_2_naming_it(tmp_path, capsys):
    assert bench(["--only", "nope", "--out", str(tmp_path / "x.json")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
