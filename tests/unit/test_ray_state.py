"""--resume checks Tune's own state files first: a file cut short by a killed driver is replaced by Ray's intact
staging copy, or refused with exit 2 naming it; then the trial folders are aligned with the state it restores
(delo.sweep.ray_state)."""

import json
import pickle
import shutil
from pathlib import Path

import pytest

from delo.config import DamagedFileError
from delo.sweep.ray_state import align_trials_with_state, problem_of, repair_ray_state

NAME = "basic-variant-state-2026-11-29_07-00-00.json"


def _experiment(tmp_path):
    exp = tmp_path / "storage" / "rank_factor"
    exp.mkdir(parents=True)
    good = pickle.dumps({"_counter": 18, "_finished": True})
    (exp / "basic-variant-state-2026-11-28_07-00-00.json").write_bytes(good)  # an older session's, intact
    (exp / NAME).write_bytes(good[: len(good) // 2])  # the newest, cut short
    return exp, good


def _staging(tmp_path, exp, payload):
    folder = tmp_path / "ray" / "session_2026-11-29_06-59" / "artifacts" / "2026-11-29_07-00" / exp.name
    (folder / "driver_artifacts").mkdir(parents=True)
    (folder / "driver_artifacts" / NAME).write_bytes(payload)
    return tmp_path / "ray"


def test_a_truncated_state_file_is_replaced_by_the_staging_copy(tmp_path, capsys):
    exp, good = _experiment(tmp_path)
    assert problem_of(exp / NAME) is not None
    lines = repair_ray_state(exp, _staging(tmp_path, exp, good))
    assert (exp / NAME).read_bytes() == good
    assert len(lines) == 1 and lines[0].startswith(f"warning: {exp / NAME}: damaged")
    assert capsys.readouterr().err.strip() == lines[0]


def test_without_an_intact_copy_resume_is_refused_naming_the_file(tmp_path):
    exp, good = _experiment(tmp_path)
    ray_temp = _staging(tmp_path, exp, good[:3])  # the staging copy is damaged too
    before = (exp / NAME).read_bytes()
    with pytest.raises(DamagedFileError) as info:
        repair_ray_state(exp, ray_temp)
    assert info.value.path == exp / NAME
    assert "--resume cannot continue this sweep" in str(info.value)
    assert (exp / NAME).read_bytes() == before  # nothing touched


def test_intact_files_are_left_alone(tmp_path):
    exp, good = _experiment(tmp_path)
    (exp / NAME).write_bytes(good)
    assert repair_ray_state(exp, None) == []
    assert (exp / NAME).read_bytes() == good


# ----------------------------------------------------------------------------------------------------------
# A driver killed between two of Tune's snapshots: the trial folders are ahead of the state --resume restores


def _state_entry(
    folder: Path | None, last_task: int, checkpoints: list[Path], latest: Path | None
) -> list[str]:
    """One trial of an experiment_state file, as Tune writes it (the checkpoint manager cloudpickled)."""
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint, CheckpointConfig
    from ray.tune.utils.serialization import TuneFunctionEncoder

    manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
    results = {p: _TrainingResult(checkpoint=Checkpoint(str(p)), metrics={}) for p in checkpoints}
    manager._checkpoint_results = list(results.values())
    manager._latest_checkpoint_result = results.get(latest)
    trial = {
        "trial_id": f"id_{folder.name if folder else 'pending'}",
        "relative_logdir": folder.name if folder else None,
    }
    meta = {"last_result": {"task": last_task} if last_task else {}, "checkpoint_manager": manager}
    return [json.dumps(trial), json.dumps(meta, cls=TuneFunctionEncoder)]


def _trial_folder(exp: Path, name: str, tasks: list[int]) -> Path:
    folder = exp / name
    folder.mkdir()
    (folder / "trial.json").write_text(json.dumps({"trial_id": f"id_{name}", "out_dir": name}))
    (folder / "result.json").write_text(
        "".join(json.dumps({"task": t, "ap_seen": 50.0 + t}) + "\n" for t in tasks)
    )
    rows = ["task,ap_seen", *(f"{t},{50.0 + t}" for t in tasks)]
    (folder / "progress.csv").write_text("\n".join(rows) + "\n")
    return folder


def _tasks(folder: Path) -> tuple[list[int], list[int]]:
    rows = [json.loads(line)["task"] for line in (folder / "result.json").read_text().splitlines()]
    csv_rows = [int(line.split(",")[0]) for line in (folder / "progress.csv").read_text().splitlines()[1:]]
    return rows, csv_rows


def test_resume_aligns_the_trial_folders_with_the_restored_state(tmp_path, capsys):
    exp = tmp_path / "storage" / "chaos"
    exp.mkdir(parents=True)
    ahead = _trial_folder(exp, "ahead_00000", [1, 2])  # reported task 2 after the snapshot (at task 1)
    (ahead / "checkpoint_000000").mkdir()
    pruned = _trial_folder(
        exp, "pruned_00001", [1, 2, 3]
    )  # the killed driver deleted checkpoint_000000 since
    (pruned / "checkpoint_000001").mkdir()
    gone = _trial_folder(exp, "gone_00002", [1, 2])  # the state restores it from a checkpoint deleted since
    (gone / "checkpoint_000002").mkdir()
    unknown = _trial_folder(exp, "unknown_00003", [1])  # created after the snapshot
    (exp / "empty_00004").mkdir()  # Tune made it, the trial never started
    (exp / "views").mkdir()  # a user's screenshots
    (exp / "views" / "tb.png").write_bytes(b"png")
    state = {
        "trial_data": [
            _state_entry(ahead, 1, [ahead / "checkpoint_000000"], ahead / "checkpoint_000000"),
            _state_entry(
                pruned,
                2,
                [pruned / "checkpoint_000000", pruned / "checkpoint_000001"],
                pruned / "checkpoint_000001",
            ),  # fmt: skip
            _state_entry(
                gone, 2, [gone / "checkpoint_000000", gone / "checkpoint_000001"], gone / "checkpoint_000001"
            ),
            _state_entry(None, 0, [], None),
        ]
    }
    (exp / "experiment_state-2026-12-05_04-00-00.json").write_text(json.dumps(state))
    ray_temp = tmp_path / "ray"
    staged = (
        ray_temp / "session_2026-12-05" / "artifacts" / "2026-12-05_04-00-00" / "chaos" / "driver_artifacts"
    )
    shutil.copytree(ahead, staged / ahead.name)
    shutil.copytree(unknown, staged / unknown.name)
    (ray_temp / "session_latest").symlink_to(ray_temp / "session_2026-12-05")  # as Ray links the newest

    lines = align_trials_with_state(exp, ray_temp)
    assert _tasks(ahead) == _tasks(staged / ahead.name) == ([1], [1])  # the restored trial reports 2 again
    assert _tasks(pruned) == ([1, 2], [1, 2])
    assert (pruned / "checkpoint_000000").is_dir()  # for Tune to delete at the next checkpoint
    assert _tasks(gone) == ([], [])  # restored from an empty checkpoint: it starts over
    assert (
        not unknown.exists() and not (staged / unknown.name).exists() and not (exp / "empty_00004").exists()
    )
    assert (exp / "views" / "tb.png").is_file()
    assert len(lines) == 5 and capsys.readouterr().err.splitlines() == lines
    assert align_trials_with_state(exp, ray_temp) == []  # aligned: nothing more to do
