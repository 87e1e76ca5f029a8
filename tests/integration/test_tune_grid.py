"""One real sweep through the launcher (``delo.cli.sweep`` in-process, joining the shared Ray as a driver joins
a running cluster) with the real runner on tiny_test: results.csv / results.md / plots, TensorBoard HParams for
every trial and for the experiment, a NaN trial listed as failed with its reason while the others finish, and a
retried trial (fault injected after task 2) whose final metrics equal an uninterrupted trial's."""

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from delo.cli import sweep as sweep_cli

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # real trials: about 30 s for the module on 2 quiet cores

SPEC = """name: real
table: components
grid:
  variants:
    delo: {}
    retried: {debug.fail_at_task: 2}
    nan: {debug.nan_at_step: 2}
  seeds: [0]
failure: {max_failures: 1}
max_concurrent: 2
"""


def _hparams(events_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(events_dir))
    acc.Reload()
    return acc.PluginTagToContent(metadata.PLUGIN_NAME)


def _sweep(ray_cluster, *args) -> tuple[int, str, str]:
    """delo-sweep ARGS --address <the shared cluster>, in this process: (exit status, stdout, stderr)."""
    import ray

    ray.shutdown()  # only this process's driver connection: the launcher makes its own (ray.init allows one)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = sweep_cli([*map(str, args), "--address", ray_cluster.address])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory, ray_cluster, tiny_world):
    tmp = tmp_path_factory.mktemp("real")
    profile = ROOT / "sweeps" / "profiles" / "tiny_test.yaml"
    spec = tmp / "spec.yaml"
    spec.write_text(f"base: {{file: {profile}}}\n" + SPEC)
    return _sweep(ray_cluster, spec, "--storage", tmp / "out"), tmp / "out" / "real"


def test_exit_status_and_progress(real_sweep):
    (code, out, err), _ = real_sweep
    assert code == 1, out + err  # 1: a trial failed, the sweep finished
    assert "[sweep real]" in out and "best final_ap" in out and "tensorboard --logdir" in out
    assert "1 trial(s) failed" in out


def test_results_table_and_failed_trial(real_sweep):
    _, exp = real_sweep
    rows = {r["variant"]: r for r in csv.DictReader((exp / "results.csv").open())}
    assert set(rows) == {"delo", "retried", "nan"}
    assert rows["delo"]["status"] == rows["retried"]["status"] == "COMPLETED"
    assert rows["nan"]["status"] == "ERROR" and "NonFiniteLossError" in rows["nan"]["error"]
    assert rows["retried"]["num_failures"] == "1"
    md = (exp / "results.md").read_text()
    assert "## Table 4: components" in md and "## Failed trials" in md and "loss became nan" in md
    assert {"results.csv", "results.md", "ap_fg.png", "best_matrix.png"} <= {p.name for p in exp.iterdir()}


def test_retry_resumes_and_matches_uninterrupted(real_sweep):
    _, exp = real_sweep

    def trial(variant):
        folder = next(p for p in exp.iterdir() if p.is_dir() and p.name.startswith(f"{variant}_s0_"))
        tune_rows = [json.loads(x) for x in (folder / "result.json").read_text().splitlines()]
        return tune_rows, json.loads((folder / folder.name / "result.json").read_text())

    (plain_rows, plain), (retry_rows, retried) = trial("delo"), trial("retried")
    # Resumed after task 2, so no task ran twice. (Tune may drop the row of a report made just before the
    # trial raised; its checkpoint is kept, which is what the retry resumes from.)
    tasks = [r["task"] for r in retry_rows]
    assert tasks == sorted(set(tasks)) and tasks[-1] == 3
    for key in ("final_ap", "final_fg", "final_last", "final_bwt", "test_final_ap"):
        assert retry_rows[-1][key] == plain_rows[-1][key], key
    for key in ("matrix", "matrix_task_aware", "test_matrix", "task_key_accuracy"):
        assert retried[key] == plain[key], key

    def timeless(history):  # wall-clock figures differ between any two runs
        return [{k: v for k, v in h.items() if not k.endswith("_time_s")} for h in history]

    assert timeless(retried["history"]) == timeless(plain["history"])


def test_tensorboard_hparams_for_experiment_and_every_trial(real_sweep):
    from tensorboard.plugins.hparams import metadata

    _, exp = real_sweep
    root = _hparams(exp)
    assert metadata.EXPERIMENT_TAG in root
    tags = {
        m.name.tag for m in metadata.parse_experiment_plugin_data(root[metadata.EXPERIMENT_TAG]).metric_infos
    }
    assert {"val/final_ap", "val/ap_seen", "test/final_ap"} <= tags
    trials = [p for p in exp.iterdir() if p.is_dir() and (p / "trial.json").is_file()]
    assert len(trials) == 3
    for folder in trials:
        content = _hparams(folder / folder.name / "tb")
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert start.group_name == folder.name
        assert start.hparams["model.E"].number_value == 4


WORLDS_SPEC = """name: worlds
grid:
  axes:
    data.synthetic.dominant: [0.0, 0.5]
  seeds: [0]
max_concurrent: 2
"""


def test_grid_over_a_generator_knob_runs_every_world(tmp_path, ray_cluster):
    """Each value of data.synthetic.dominant gets its own cache folder, so neither trial finds its world
    replaced by the other's (the driver prepares both before any trial starts)."""
    from delo.config import load_config
    from delo.data.synthetic import check_synthetic

    profile = ROOT / "sweeps" / "profiles" / "tiny_test.yaml"
    spec = tmp_path / "worlds.yaml"
    spec.write_text(f"base: {{file: {profile}}}\n" + WORLDS_SPEC)
    code, out, err = _sweep(ray_cluster, spec, "--storage", tmp_path / "out")
    assert code == 0, out[-3000:] + err[-3000:]
    rows = list(csv.DictReader((tmp_path / "out" / "worlds" / "results.csv").open()))
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows), rows
    folders = set()
    for dominant in (0.0, 0.5):
        syn = load_config(profile, [f"data.synthetic.dominant={dominant}"]).data.synthetic
        folder, meta = check_synthetic(syn)
        assert meta["dominant"] == dominant
        folders.add(folder)
    assert len(folders) == 2
