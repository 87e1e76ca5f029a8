"""The launchers on issue 17's bad inputs, as a user meets them: exit 2, one `error:` line naming the file and the
key with both line numbers, no traceback, nothing written. (Damaged checkpoints: tests/integration/
test_train_run.py; damaged sweep files: test_damaged_files.py; a busy folder: test_folder_lock.py.)"""

from pathlib import Path

import pytest

from delo.cli import sweep, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "sweeps" / "profiles" / "tiny_test.yaml"


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  E: 4\n  r: 2\n  E: 8\n", "duplicated key 'model.E' (lines 3 and 5)"),
        ("model:\n  E: 4\n  e: 8\n", "keys 'model.E' (line 3) and 'model.e' (line 4) differ only in case"),
    ],
    ids=["duplicated", "case-only"],
)
def test_train_refuses_a_config_with_twice_the_same_key(tmp_path, capsys, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(f"extends: {TINY}\n{text}")
    assert train([str(config), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"error: {config}: {message}")
    assert captured.out == "" and not (tmp_path / "out").exists()


def test_sweep_refuses_a_spec_or_profile_with_a_duplicated_key(tmp_path, capsys):
    spec = tmp_path / "x.yaml"
    spec.write_text("name: x\ngrid:\n  seeds: [0]\n  seeds: [1]\n")
    assert sweep([str(spec), "--storage", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {spec}: duplicated key 'grid.seeds' (lines 3 and 4)") and "\n" not in err
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"extends: {TINY}\ntrain:\n  lr: 0.01\n  LR: 0.1\n")
    smoke = ROOT / "sweeps" / "smoke.yaml"
    assert sweep([str(smoke), "--profile", str(profile), "--storage", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert f"{profile}: keys 'train.lr' (line 3) and 'train.LR' (line 4) differ only in case" in err
    assert not (tmp_path / "results").exists()
