"""A refused run leaves nothing behind: inputs are checked before the run folder exists, and a refusal after the
folder lock (a run that fails its checks inside) removes the folder it created, never one that was there."""

from pathlib import Path

import pytest

from delo import cli
from delo.config import ConfigError


def test_a_missing_data_root_creates_no_run_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "x"
    rc = cli.train(["--set", "data.name=mmimdb", "--set", "data.root=/nonexistent/mmimdb", "--out", str(out)])
    assert rc == 2
    assert "data.root: /nonexistent/mmimdb is not a folder" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "runs").exists()


@pytest.fixture
def refusing_run(monkeypatch):
    """run_continual refusing its input after the lock is taken (as a damaged or foreign checkpoint would)."""

    def refuse(cfg, out, progress=False):
        raise ConfigError("refused inside the run")

    monkeypatch.setattr("delo.train.run_continual", refuse)
    monkeypatch.setattr("delo.data.prepare_data", lambda cfg: None)


def test_a_refusal_after_the_lock_removes_the_folder_it_created(tmp_path, refusing_run, capsys):
    out = tmp_path / "x"
    assert cli.train(["--out", str(out)]) == 2
    assert "error: refused inside the run" in capsys.readouterr().err
    assert not out.exists()


def test_a_refusal_never_removes_a_folder_that_was_there(tmp_path, refusing_run):
    out = tmp_path / "x"
    out.mkdir()
    assert cli.train(["--out", str(out)]) == 2
    assert [p.name for p in Path(out).iterdir()] == [".delo.lock"]  # the lock file only; the folder stays


def test_a_sweep_refused_on_its_data_leaves_no_experiment_folder(tmp_path, capsys):
    smoke = str(Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml")
    sets = ["--set", "data.name=mmimdb", "--set", "data.root=/nonexistent/mmimdb"]
    assert cli.sweep([smoke, *sets, "--storage", str(tmp_path)]) == 2
    assert "/nonexistent/mmimdb is not a folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
