"""The sweep package's layering: the spec, grid, search, experiment and report modules never import Ray (they run
in dry runs, reports and tests without it); Ray stays behind trainable, searcher, progress and driver."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAY_FREE = ["spec", "grid", "search", "experiment", "records", "layouts", "report", "plots"]


def test_ray_free_modules_do_not_import_ray():
    imports = "; ".join(f"import delo.sweep.{name}" for name in RAY_FREE)
    code = (
        f"import sys; {imports}; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("module", ["spec", "layouts"])
def test_the_schema_and_the_layouts_do_not_import_the_renderers(module):
    """The spec schema reads the table names from the layouts, which the report and the plots read, not the
    reverse: neither imports report or plots (nor matplotlib)."""
    code = (
        f"import sys; import delo.sweep.{module}; "
        "print(sorted(m for m in sys.modules if m in ('delo.sweep.report', 'delo.sweep.plots', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_tune_status_names_are_ours():
    # trial_status.yaml passes Tune's own names through, so they must be the vocabulary's.
    from ray.tune.experiment import Trial

    from delo.sweep.experiment import Status

    assert (Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR) == (
        Status.PENDING,
        Status.RUNNING,
        Status.PAUSED,
        Status.TERMINATED,
        Status.ERROR,
    )
