"""Damaged bookkeeping files of a sweep folder: the summary tool exits 2 with one line naming the file, what is
wrong with it and what to do (no traceback). Checkpoints: test_checkpoint.py and the integration runs."""

import json
from pathlib import Path

import pytest
import yaml

from delo.cli import summarize


def _exp(tmp_path: Path) -> Path:
    """A sweep folder with one finished trial, as the driver and the trial leave it."""
    exp = tmp_path / "exp"
    trial = exp / "E4-r2_s0_00000"
    (trial / trial.name).mkdir(parents=True)
    (exp / "sweep_spec.yaml").write_text(
        yaml.safe_dump({"spec": {"name": "x", "table": "generic"}, "base": {}})
    )
    (exp / "trial_status.yaml").write_text(yaml.safe_dump({"total_trials": 1, "trials": {}}))
    info = {"trial_id": "x_00000", "label": "E=4,r=2", "seed": 0, "overrides": {}, "config": {}}
    (trial / "trial.json").write_text(json.dumps({**info, "out_dir": trial.name}))
    (trial / "result.json").write_text(json.dumps({"task": 1, "ap_seen": 50.0, "final_ap": 50.0}) + "\n")
    (trial / trial.name / "result.json").write_text(json.dumps({"matrix": [[50.0]], "params": {"total": 1}}))
    return exp


def test_intact_folder_summarizes(tmp_path, capsys):
    assert summarize([str(_exp(tmp_path))]) == 0


@pytest.mark.parametrize(
    "relative, damage, problem, advice",
    [
        (
            "trial_status.yaml",
            "total_trials: [1\n",
            "unreadable: ParserError",
            "Delete it: it only caches the driver's last view of the trials",
        ),
        ("trial_status.yaml", "- a\n- b\n", "holds a list, not a mapping", "Delete it"),
        ("sweep_spec.yaml", "spec: {name: x\n", "unreadable: ParserError", "restore it from a copy"),
        (
            "E4-r2_s0_00000/trial.json",
            '{"trial_id": "x_0',
            "unreadable: JSONDecodeError: Unterminated string",
            "The trial writes it when it starts",
        ),
        (
            "E4-r2_s0_00000/E4-r2_s0_00000/result.json",
            '{"matrix": [[50.0]',
            "unreadable: JSONDecodeError",
            "The run writes it at its end: restore it from a copy, or delete it",
        ),
        ("E4-r2_s0_00000/E4-r2_s0_00000/result.json", "\x00\x00", "unreadable: JSONDecodeError", "delete it"),
    ],
    ids=["status-cut", "status-list", "spec-cut", "trial-info-cut", "run-result-cut", "run-result-zeros"],
)
def test_damaged_file_exits_2_naming_it(tmp_path, capsys, relative, damage, problem, advice):
    exp = _exp(tmp_path)
    (exp / relative).write_text(damage)
    assert summarize([str(exp)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: {exp / relative}: damaged file ({problem}")
    assert advice in lines[0]


def test_cut_missing_table_is_refused_by_trials_and_rebuilt_by_the_launcher(tmp_path, capsys):
    from delo.data.missing import MissingSpec, ensure_table, load_table
    from delo.data.records import DataError

    spec, uids = MissingSpec("ds", "train", 0.5, "both", 0), [[f"a{i}" for i in range(20)]]
    path = ensure_table(spec, uids, tmp_path)
    codes = load_table(spec, uids, tmp_path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(DataError) as err:
        load_table(spec, uids, tmp_path)
    assert str(err.value).startswith(f"{path}: unreadable missing table (")
    assert "the launchers rebuild it when they start (or delete it)" in str(err.value)
    ensure_table(spec, uids, tmp_path)  # what launch/train.py and launch/sweep.py run first
    assert capsys.readouterr().err.startswith(f"warning: {path}: unreadable missing table")
    assert load_table(spec, uids, tmp_path) == codes


def test_damaged_synthetic_set_is_named_by_trials(tmp_path):
    from delo.config import SyntheticConfig
    from delo.data.records import DataError
    from delo.data.synthetic import check_synthetic, variant_dir

    folder = variant_dir(SyntheticConfig(), tmp_path)
    folder.mkdir(parents=True)
    (folder / "generator.json").write_text('{"kind": "m')
    with pytest.raises(DataError) as err:
        check_synthetic(SyntheticConfig(), tmp_path)
    assert str(err.value).startswith(f"{folder / 'generator.json'}: damaged file (not readable JSON)")
    assert f"or delete {folder}" in str(err.value)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mode):
    """mkstemp alone makes every file 0600; results on shared storage must be as readable as the umask says."""
    import os
    import stat

    from delo.atomic import atomic_write, atomic_write_json, current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_json(tmp_path / "result.json", {"a": 1})
        atomic_write(tmp_path / "task_1.pt", lambda fh: fh.write(b"x"), binary=True)
    finally:
        os.umask(old)
    for name in ("result.json", "task_1.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode


def test_a_killed_writers_temp_files_are_removed_by_the_folders_next_writer(tmp_path):
    """delo.atomic writes beside the target and renames; a writer SIGKILLed in between leaves its temp file. The
    folder's next writer (a run resuming its folder, a trial its own, a resumed driver its experiment) removes
    them, and only them."""
    from delo.atomic import atomic_write_text, remove_temp_files

    atomic_write_text(tmp_path / "result.json", "{}")
    left = [tmp_path / ".result.json.k2j4x_1.tmp", tmp_path / ".state.pt.abcd.tmp"]
    for path in left:
        path.write_text("cut sh")
    (tmp_path / ".delo.lock").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.tmp").write_text("")  # another folder's writer's business
    assert remove_temp_files(tmp_path) == sorted(left)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".delo.lock", "result.json", "sub"]
    assert (tmp_path / "sub" / ".x.tmp").exists() and remove_temp_files(tmp_path / "absent") == []
