"""Smoke test of the performance figures: ``launch/bench.py --quick`` writes every figure with its fields.

No timing assertions: the figures are measured on shared machines; this only checks that each one runs.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from delo.tools.bench import FIGURES

pytestmark = pytest.mark.slow  # one quick run takes about 20-30 s on 2 shared cores

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"value", "target", "met"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "launch" / "bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_figure_is_written(quick):
    assert set(FIGURES) <= set(quick)
    for name in FIGURES:
        figure = quick[name]
        assert set(figure) >= FIELDS, name
        assert isinstance(figure["value"], (int, float)), name
        assert figure["met"] in (True, False, None), name
        assert (figure["target"] is None) == (figure["met"] is None), name


def test_context_and_machine(quick):
    assert quick["quick"] is True
    assert {"cpu_count", "torch", "threads"} <= set(quick["machine"])
    assert "consistency_cost" in quick and 0 < quick["consistency_cost"]["complete_fraction"] < 1
    assert {"samples_per_s", "peak_rss_bytes", "gpu"} <= set(quick["context"])
    assert quick["context"]["peak_rss_bytes"] > 0
    if quick["context"]["gpu"] is None:
        assert quick["context"]["gpu_note"]
    assert quick["checkpoint_ratio"]["full_state_dict_bytes"] > quick["checkpoint_ratio"]["task_file_bytes"]


def test_unknown_figure_exits_2(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "bench.py"),
            "--only",
            "nope",
            "--out",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "nope" in done.stderr
