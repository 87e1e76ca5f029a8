"""Whole continual runs on the synthetic benchmark with the tiny backbone: result.json, determinism, resume,
refusal of a foreign checkpoint, the NaN stop, the CLI's exit codes and the TensorBoard files. The CLI runs
in-process (``delo.cli.train``); tests/integration/test_launchers.py runs launch/train.py itself once."""

import contextlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from delo.cli import train
from delo.config import DEFAULT_PROFILE, load_config

pytestmark = pytest.mark.xdist_group("train_run")  # one worker builds the module's costly fixture, once

# 3 tasks, 4 steps each on a tenth of the synthetic set (one batch per epoch), test rows on: small enough for 2
# shared cores.
TINY_RUN = [
    "data.num_tasks=3",
    "data.synthetic.scale=0.1",
    "train.epochs=4",
    "train.batch_size=16",
    "train.max_steps_per_task=4",
    "model.E=4",
    "model.r=2",
    "eval.test=true",
    "eval.batch_size=64",
    "train.threads=1",
    "debug.diagnostics_every=2",
]
TINY_ARGS = [a for item in TINY_RUN for a in ("--set", item)]  # delo-train's spelling of TINY_RUN

RESULT_KEYS = {
    "ap",
    "fg",
    "last",
    "bwt",
    "matrix",
    "matrix_task_aware",
    "task_key_accuracy",
    "by_missing",
    "params",
    "config",
    "wall_time_s",
    "provenance",
    "test_ap",
    "test_fg",
    "test_matrix",
    "test_task_key_accuracy",
    "key_acc_by_missing",
    "test_key_acc_by_missing",
    "task_routing",
    "test_task_routing",
}
KEY_ACC_BY_MISSING = ("key_acc_complete", "key_acc_text_missing", "key_acc_image_missing")
REPORT_KEYS = {
    "task",
    "ap_seen",
    "acc_new",
    "fg_seen",
    "bwt_seen",
    "key_acc",
    "ap_seen_task_aware",
    "ap_seen_complete",
    "ap_seen_text_missing",
    "ap_seen_image_missing",
    "task_time_s",
    "train_loss",
    "test_ap_seen",
    *KEY_ACC_BY_MISSING,
    *(f"test_{k}" for k in KEY_ACC_BY_MISSING),
}
FINAL_KEYS = {"final_ap", "final_fg", "final_last", "final_bwt", "final_ap_task_aware"}


def _cfg(*extra):
    return load_config(DEFAULT_PROFILE, overrides=[*TINY_RUN, *extra])  # what launch/train.py runs by default


def _comparable(result: dict) -> dict:
    """A result without the wall-clock fields and the fault-injection knobs."""
    out = {k: v for k, v in result.items() if k not in ("wall_time_s", "history", "provenance")}
    out["config"] = {k: v for k, v in result["config"].items() if k != "debug"}
    out["history"] = [{k: v for k, v in h.items() if not k.endswith("_time_s")} for h in result["history"]]
    return out


@pytest.fixture(scope="module")
def reference(tiny_world, tmp_path_factory):
    """One uninterrupted run, with the reports it made."""
    from delo.train import run_continual

    out = tmp_path_factory.mktemp("reference")
    reports = []
    result = run_continual(_cfg(), out, lambda m, d: reports.append((m, sorted(p.name for p in d.iterdir()))))
    return out, result, reports


@pytest.mark.slow
def test_run_writes_result_and_reports(reference):
    out, result, reports = reference
    on_disk = json.loads((out / "result.json").read_text())
    assert set(on_disk) >= RESULT_KEYS
    assert on_disk["ap"] == result["ap"]
    T = 3
    assert len(result["matrix"]) == T and all(len(row) == T for row in result["matrix"])
    assert all(result["matrix"][j][i] is None for j in range(T) for i in range(j + 1, T))
    assert all(result["matrix"][j][i] is not None for j in range(T) for i in range(j + 1))
    assert set(result["by_missing"]) == {"complete", "text_missing", "image_missing"}
    for key in ("key_acc_by_missing", "test_key_acc_by_missing"):  # eta 0.7 both: every type has samples
        assert set(result[key]) == {"complete", "text_missing", "image_missing"}
        assert all(0.0 <= v <= 100.0 for v in result[key].values()), result[key]
    for prefix in ("", "test_"):  # the routing's diagonal share is the last row of task-key accuracy
        routing, key_acc = result[prefix + "task_routing"], result[prefix + "task_key_accuracy"][-1]
        assert len(routing) == T and all(len(row) == T and sum(row) > 0 for row in routing)
        assert [100 * row[i] / sum(row) for i, row in enumerate(routing)] == pytest.approx(key_acc, abs=1e-5)
    assert result["params"]["total"] > result["params"]["trainable"] > 0
    assert result["config"]["model"]["E"] == 4

    assert [m["task"] for m, _ in reports] == [1, 2, 3]
    for m, files in reports:
        assert set(m) >= REPORT_KEYS
        assert all(0.0 <= m[k] <= 100.0 for k in KEY_ACC_BY_MISSING), m
        assert ("final_ap" in m) == (m["task"] == T)  # final keys only in the last report
        assert files == ["state.pt"] + [f"task_{k}.pt" for k in range(1, m["task"] + 1)]
    last = reports[-1][0]
    assert set(last) >= FINAL_KEYS and "test_final_ap" in last
    assert last["final_ap"] == pytest.approx(result["ap"], abs=1e-5)
    assert last["ap_seen"] == last["final_ap"]


@pytest.mark.slow
def test_same_seed_same_metrics(reference, tmp_path):
    from delo.train import run_continual

    again = run_continual(_cfg(), tmp_path / "again")
    assert _comparable(again) == _comparable(reference[1])


@pytest.mark.slow
def test_reusing_frozen_tasks_predictions_gives_the_same_matrices(reference, tmp_path):
    """eval.reuse_frozen (default) against forwarding every seen task in every row: every matrix of both
    splits, task-agnostic and task-aware, by missing type and task-key accuracy, is identical."""
    from delo.train import run_continual

    full = run_continual(_cfg("eval.reuse_frozen=false"), tmp_path / "full")
    reused = reference[1]
    keys = [
        k
        for k in reused
        if "matrix" in k or "by_missing" in k or k.endswith(("task_key_accuracy", "routing"))
    ]
    assert len(keys) >= 10
    for key in keys:
        assert full[key] == reused[key], key


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_metrics(reference, tmp_path):
    from delo.train import run_continual

    out = tmp_path / "run"
    reports = []
    with pytest.raises(RuntimeError, match="injected failure after task 2"):
        run_continual(_cfg("debug.fail_at_task=2"), out, lambda m, d: reports.append(m["task"]))
    assert reports == [1, 2] and not (out / "result.json").exists()
    # the retry keeps the fault knob: it no longer fires, task 2 was completed by the earlier process
    result = run_continual(_cfg("debug.fail_at_task=2"), out, lambda m, d: reports.append(m["task"]))
    assert reports == [1, 2, 3]
    assert _comparable(result) == _comparable(reference[1])
    # a finished run on the same folder just returns its result
    assert _comparable(run_continual(_cfg(), out)) == _comparable(result)


@pytest.mark.slow
def test_foreign_checkpoint_is_refused_untouched(reference):
    from delo.checkpoint import CheckpointMismatchError
    from delo.train import run_continual

    out = reference[0]
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    with pytest.raises(CheckpointMismatchError, match=r"model\.E: 4 -> 8") as err:
        run_continual(_cfg("model.E=8"), out)
    assert str(out / "checkpoints") in str(err.value)
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before


def _copy_checkpoints(reference, dest: Path) -> Path:
    """A finished run's checkpoints, copied: as if another machine had left them in ``dest``."""
    shutil.copytree(reference[0] / "checkpoints", dest / "checkpoints")
    return dest / "checkpoints"


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.slow
def test_damaged_last_task_checkpoint_is_retrained_to_the_same_metrics(reference, tmp_path, capsys):
    """A truncated task_3.pt (a partial copy, a full disk): one warning line naming it, task 3 trained again,
    and the run ends with the uninterrupted run's metrics (exit 0, no traceback)."""
    out = tmp_path / "run"
    ckpt = _copy_checkpoints(reference, out)
    data = (ckpt / "task_3.pt").read_bytes()
    (ckpt / "task_3.pt").write_bytes(data[: len(data) // 2])
    with _umask(0o022):
        code = train([*TINY_ARGS, "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 0, stderr[-3000:]
    # what it wrote honours the umask (a colleague on shared storage can read it)
    for path in (out / "result.json", ckpt / "task_3.pt", ckpt / "state.pt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {ckpt / 'task_3.pt'}: damaged (not a readable checkpoint: RuntimeError: PytorchStreamReader "
        "failed reading zip archive: failed finding central directory); retraining task 3 from the last good "
        "checkpoint"
    ]
    assert "Traceback" not in stderr
    result = json.loads((out / "result.json").read_text())
    assert _comparable(result) == _comparable(json.loads((reference[0] / "result.json").read_text()))


@pytest.mark.slow
def test_damaged_earlier_task_checkpoint_rewinds_to_it(reference, tmp_path, capsys):
    from delo.train import run_continual

    out = tmp_path / "run"
    ckpt = _copy_checkpoints(reference, out)
    (ckpt / "task_2.pt").write_bytes(b"garbage")
    result = run_continual(_cfg(), out)
    err = capsys.readouterr().err
    assert f"warning: {ckpt / 'task_2.pt'}: damaged (" in err
    assert "retraining tasks 2 to 3 from the last good checkpoint" in err
    assert _comparable(result) == _comparable(reference[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, problem",
    [
        (
            b"garbage",
            "not a readable checkpoint: UnpicklingError: WeightsUnpickler error: Unsupported operand 103",
        ),
        (None, "not a readable checkpoint: RuntimeError: PytorchStreamReader failed reading zip archive"),
    ],
    ids=["garbage", "truncated"],
)
def test_damaged_state_exits_2_naming_the_file(reference, tmp_path, capsys, damage, problem):
    out = tmp_path / "run"
    ckpt = _copy_checkpoints(reference, out)
    state = ckpt / "state.pt"
    state.write_bytes(damage if damage is not None else state.read_bytes()[:100])
    code = train([*TINY_ARGS, "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {state}: damaged file ({problem}")
    assert f"restore it from a copy, or remove {ckpt} (or use another output folder)" in line
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_nan_loss_stops_the_run(tiny_world, tmp_path):
    from delo.train import NonFiniteLossError, run_continual

    with pytest.raises(NonFiniteLossError, match=r"task 2, step 2 of 4 \(global step 6\)"):
        run_continual(_cfg("debug.nan_at_step=6"), tmp_path)
    assert (tmp_path / "checkpoints" / "task_1.pt").exists()
    assert not (tmp_path / "checkpoints" / "task_2.pt").exists()


@pytest.mark.slow
def test_tensorboard_holds_scalars_hparams_and_images(reference):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata

    mux = EventMultiplexer(size_guidance={"tensors": 0, "scalars": 0})
    mux.AddRunsFromDirectory(str(reference[0] / "tb"))
    mux.Reload()
    (run,) = mux.Runs()
    tags = mux.Runs()[run]
    assert {
        "val/ap_seen",
        "val/key_acc",
        "task_aware/ap_seen",
        "train/loss",
        "val/final_ap",
        "test/final_ap",
        "val/fg_seen",
        "val/key_acc_image_missing",
        "test/key_acc_complete",
    } <= set(tags["scalars"])
    assert [e.step for e in mux.Scalars(run, "val/ap_seen")] == [1, 2, 3]
    dynamics = {f"dynamics/{k}" for k in (
        "grad_norm/factors", "grad_norm/routers", "grad_norm/map", "proxy_only_rows/A", "proxy_only_rows/B",
        "selection_entropy/A_vision", "selection_entropy/B_text", "selection_unchanged/A_vision",
        "selection_unchanged/B_text")}  # fmt: skip
    assert dynamics <= set(tags["scalars"])
    # one point per task's epoch, at the global step that ends it: 32 training samples a task (scale 0.1) are two
    # batches of 16, so the 4-step cap ends each task after 2 epochs (steps 2 and 4 of its 4)
    assert [e.step for e in mux.Scalars(run, "dynamics/selection_entropy/A_vision")] == list(range(2, 13, 2))
    images = {"val/result_matrix", "test/result_matrix", "val/task_routing", "test/task_routing"}
    assert images | {"routing/expert_frequency"} <= set(tags["images"])
    assert [e.step for e in mux.Images(run, "val/task_routing")] == [1, 2, 3]
    assert "routing/cos_qv_qt_complete" in tags["histograms"]
    content = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)[run]
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model.E"].number_value == 4 and start.hparams["eval.test"].bool_value
    assert metadata.SESSION_END_INFO_TAG in content


def test_cli_bad_config_exits_2_before_training(tmp_path, capsys):
    code = train(
        ["--set", "model.r=9", "--set", "model.E=4", "--set", "train.nope=1", "--out", str(tmp_path / "x")]
    )
    stderr = capsys.readouterr().err
    assert code == 2
    assert "train.nope" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x").exists()
