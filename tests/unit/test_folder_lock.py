"""One writer per run folder and per sweep folder: a second one exits 2 at once naming the folder and the holder;
the lock of a killed holder is taken over with a warning."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from delo.folderlock import LOCK_FILE, FolderBusyError, FolderLock

ROOT = Path(__file__).resolve().parents[2]


def test_second_holder_is_refused_naming_the_holder(tmp_path, capsys):
    folder = tmp_path / "run"
    with FolderLock(folder, "run", "use another --out"):
        with pytest.raises(FolderBusyError) as err:
            FolderLock(folder, "run", "use another --out").acquire()
        text = str(err.value)
        assert text.startswith(f"{folder}: another run is writing to this folder (pid {os.getpid()} on ")
        assert f"on {socket.gethostname()}, started {time.strftime('%Y-%m-%d')}" in text
        assert text.endswith("; wait for it to end, or use another --out")
    # released cleanly: the next holder takes it without a warning
    with FolderLock(folder):
        pass
    assert capsys.readouterr().err == ""
    assert (folder / LOCK_FILE).read_text() == ""


def test_lock_of_a_killed_holder_is_taken_over_with_a_warning(tmp_path, capsys):
    folder = tmp_path / "run"
    code = (
        "import sys, time; from delo.folderlock import FolderLock; FolderLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(120)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid} on"):
            FolderLock(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with FolderLock(folder):
        err = capsys.readouterr().err
        recorded = json.loads((folder / LOCK_FILE).read_text())
    assert err.startswith(
        f"warning: {folder / LOCK_FILE}: taking over the stale lock of a run that is gone (pid "
    )
    assert f"(pid {holder.pid} on {socket.gethostname()}, started " in err
    assert recorded["pid"] == os.getpid()


def test_second_train_run_on_a_folder_exits_2_at_once(tmp_path, capsys):
    from delo.cli import train

    out = tmp_path / "out"
    with FolderLock(out, "run"):  # an flock of its own: the same process is refused as another would be
        code = train([str(ROOT / "sweeps/profiles/tiny_test.yaml"), "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-2000:]
    started = time.strftime("%Y-%m-%d")
    assert re.fullmatch(
        re.escape(
            f"error: {out}: another run is writing to this folder (pid {os.getpid()} on {socket.gethostname()}, "
        )
        + rf"started {started} [0-9:]+ \w+\); wait for it to end, or use another --out",
        stderr.strip(),
    ), stderr
    # refused before any work: no world prepared into it, no checkpoint (no wall-clock bound: tests run loaded)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


def test_second_sweep_on_an_experiment_folder_exits_2(tmp_path, capsys):
    from delo.sweep.driver import launch
    from delo.sweep.spec import load_sweep

    spec = ROOT / "sweeps" / "smoke.yaml"
    exp = load_sweep(spec, storage=str(tmp_path)).experiment_dir
    with FolderLock(exp, "sweep"):
        status = launch(spec, storage=str(tmp_path), check_inputs=False)
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {exp}: another sweep is writing to this folder (pid {os.getpid()} on ")
    assert err.endswith("; wait for it to end, or give this sweep another --storage or spec name")
    assert sorted(p.name for p in exp.iterdir()) == [LOCK_FILE]
