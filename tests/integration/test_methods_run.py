"""Every comparator through the real runner (what `launch/train.py ... --set model.method=M` runs): result.json
names the method and its parameter counts, and a run interrupted after task 1 resumes to exactly the metrics of
an uninterrupted one, also for methods whose shared tensors keep training (their task states carry them)."""

import json

import pytest

from delo.config import DEFAULT_PROFILE, load_config
from delo.methods.registry import METHOD_NAMES

# 2 tasks, 2 steps each on a tenth of the synthetic set, val rows only: seconds per method on one core.
SHORT = [
    "data.num_tasks=2",
    "data.synthetic.scale=0.1",
    "train.epochs=1",
    "train.batch_size=16",
    "train.max_steps_per_task=2",
    "eval.test=false",
    "eval.batch_size=64",
    "train.threads=1",
]
COMPARATORS = [m for m in METHOD_NAMES if m != "delo"]


def _cfg(method, *extra):
    return load_config(DEFAULT_PROFILE, overrides=[*SHORT, f"model.method={method}", *extra])


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in ("wall_time_s", "history", "config", "provenance")}
    out["history"] = [{k: v for k, v in h.items() if not k.endswith("_time_s")} for h in result["history"]]
    return out


@pytest.fixture(scope="module")
def prepared():
    from delo.data import prepare_data

    prepare_data(_cfg("delo"))


@pytest.mark.slow
@pytest.mark.parametrize("method", COMPARATORS)
def test_every_comparator_runs_and_reports_its_method_and_size(prepared, tmp_path, method):
    from delo.train import build_model, run_continual

    result = run_continual(_cfg(method), tmp_path)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["config"]["model"]["method"] == method
    assert len(on_disk["matrix"]) == 2 and on_disk["matrix"][1][0] is not None
    # the counts the runner wrote are the model's own, for the latest task of a 2-task run
    model = build_model(_cfg(method), multilabel=False)
    model.begin_task(0, 4, 0)
    model.begin_task(1, 4, 4)
    assert result["params"] == model.parameter_counts()
    assert 0 < result["params"]["trainable"] < result["params"]["total"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rank1_pool", "pass_moe", "mora", "rebq"])
def test_interrupted_comparator_resumes_to_the_same_metrics(prepared, tmp_path, method):
    from delo.train import run_continual

    reference = run_continual(_cfg(method), tmp_path / "reference")
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected failure after task 1"):
        run_continual(_cfg(method, "debug.fail_at_task=1"), out)
    resumed = run_continual(_cfg(method, "debug.fail_at_task=1"), out)
    assert _comparable(resumed) == _comparable(reference)
