"""Provenance: which code, libraries, machine and command produced a result; trials of one sweep that ran other
code are named."""

import shutil
import subprocess
import sys

import pytest

from delo import provenance


def test_a_run_from_this_checkout_names_its_commit_and_dirty_flag():
    block = provenance.collect(["delo-train", "--out", "x"])
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert block["git_commit"] == head and block["git_dirty"] is dirty
    assert block["package_version"] == "0.1.0"
    assert block["python"] == ".".join(map(str, sys.version_info[:3]))
    assert block["libraries"]["pydantic"] and block["command"] == ["delo-train", "--out", "x"]
    assert block["device"]["cpus"] >= 1 and block["device"]["cpu"]
    assert block["ended"] is None and provenance.finish(block)["ended"] >= block["started"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_outside_a_checkout_the_git_fields_are_none(tmp_path):
    assert provenance.git_state(tmp_path) == (None, None)


def test_mixed_provenance_names_the_trials_of_each_code_version():
    a = {
        "package_version": "0.1.0",
        "git_commit": "aaa",
        "git_dirty": False,
        "libraries": {"torch": "2.13.0"},
    }
    b = {**a, "git_commit": "bbb"}
    c = {**a, "libraries": {"torch": "2.14.1"}}
    assert provenance.mixed({"t0": a, "t1": dict(a)}) == []
    assert sorted(provenance.mixed({"t0": a, "t1": b, "t2": dict(a)})) == [["t0", "t2"], ["t1"]]
    assert sorted(provenance.mixed({"t0": a, "t1": c, "t2": None})) == [["t0"], ["t1"], ["t2"]]


def test_describe_says_commit_hardware_and_command():
    block = provenance.finish(provenance.collect(["launch/sweep.py", "sweeps/x.yaml"]))
    text = "\n".join(provenance.describe(block))
    assert "command: `launch/sweep.py sweeps/x.yaml`" in text
    assert (
        (f"git {block['git_commit'][:12]}" in text)
        if block["git_commit"]
        else ("not from a checkout" in text)
    )


def test_an_installed_copy_outside_a_checkout_records_no_commit(tmp_path):
    """The package as a wheel installs it (a folder with no .git above it): the git fields are None, the rest is
    recorded, and nothing fails."""
    import json
    from pathlib import Path

    package = Path(provenance.__file__).resolve().parent
    shutil.copytree(
        package, tmp_path / "site" / "delo", ignore=shutil.ignore_patterns("__pycache__", "assets")
    )
    code = (
        "import json, delo; from delo import provenance; "
        "print(json.dumps({'file': delo.__file__, 'block': provenance.collect(['x'])}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen = json.loads(out)
    assert Path(seen["file"]).is_relative_to(tmp_path)  # the copy ran, not this checkout
    block = seen["block"]
    assert block["git_commit"] is None and block["git_dirty"] is None
    assert block["package_version"] == "0.1.0" and block["command"] == ["x"]
