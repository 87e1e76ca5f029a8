"""A sweep's provenance: results.md opens with who launched it on what; trials that ran other code are named."""

import json

from test_sweep_report import _exp

from delo import cli, provenance
from delo.sweep.experiment import PROVENANCE_FILE, read_launches, record_launch
from delo.sweep.records import collect
from delo.sweep.report import mixed_code_warning, write_report


def _stamp(exp, name: str, commit: str, torch: str = "2.13.0") -> None:
    path = exp / name / name / "result.json"
    run = json.loads(path.read_text())
    run["provenance"] = {
        "package_version": "0.1.0",
        "git_commit": commit,
        "git_dirty": False,
        "libraries": {"torch": torch},
    }
    path.write_text(json.dumps(run))


def test_launches_are_recorded_in_order(tmp_path):
    first, again = provenance.collect(["launch/sweep.py", "s.yaml"]), provenance.collect(["--resume"])
    record_launch(tmp_path, first)
    record_launch(tmp_path, again)
    assert read_launches(tmp_path) == [first, again]
    assert json.loads((tmp_path / PROVENANCE_FILE).read_text())["launches"][1]["command"] == ["--resume"]


def test_results_md_opens_with_the_sweep_provenance(tmp_path):
    exp = _exp(tmp_path)
    record_launch(exp, provenance.finish(provenance.collect(["launch/sweep.py", "sweeps/rank_factor.yaml"])))
    record_launch(exp, provenance.collect(["launch/sweep.py", "sweeps/rank_factor.yaml", "--resume"]))
    write_report(exp)
    md = (exp / "results.md").read_text()
    head = md.split("## Provenance", 1)[1].split("\n## ", 1)[0]
    assert "- command: `launch/sweep.py sweeps/rank_factor.yaml`" in head
    assert "resumed 1 time(s); last: `launch/sweep.py sweeps/rank_factor.yaml --resume`" in head
    assert "Warning" not in md  # the hand-made trials carry no provenance: one group


def test_trials_that_ran_other_code_are_named(tmp_path, capsys):
    exp = _exp(tmp_path)
    _stamp(exp, "E16-r2_s0_00000", "a" * 40)
    _stamp(exp, "E16-r2_s1_00001", "a" * 40)
    _stamp(exp, "E16-r4_s0_00002", "b" * 40)
    warning = mixed_code_warning(collect(exp))
    assert warning == (
        "trials of this sweep ran different code or library versions: "
        "[aaaaaaaaaaaa; torch 2.13.0]: `E16-r2_s0_00000`, `E16-r2_s1_00001`; "
        "[bbbbbbbbbbbb; torch 2.13.0]: `E16-r4_s0_00002`"
    )
    assert cli.summarize([str(exp)]) == 0
    assert f"warning: {warning}" in capsys.readouterr().err
    assert f"**Warning:** {warning}." in (exp / "results.md").read_text()


def test_library_versions_alone_also_differ(tmp_path):
    exp = _exp(tmp_path)
    for name in ("E16-r2_s0_00000", "E16-r2_s1_00001"):
        _stamp(exp, name, "a" * 40)
    _stamp(exp, "E16-r4_s0_00002", "a" * 40, torch="2.14.1")
    assert "[aaaaaaaaaaaa; torch 2.14.1]: `E16-r4_s0_00002`" in mixed_code_warning(collect(exp))


def test_the_driver_stamps_the_end_of_its_launch_before_the_report(tmp_path):
    from types import SimpleNamespace

    from delo.sweep import driver

    exp = _exp(tmp_path)
    record_launch(exp, provenance.collect(["launch/sweep.py", "sweeps/rank_factor.yaml"]))
    record_launch(exp, provenance.collect(["launch/sweep.py", "sweeps/rank_factor.yaml", "--resume"]))
    driver.finish(SimpleNamespace(experiment_dir=exp))
    first, last = read_launches(exp)
    assert first["ended"] is None  # an interrupted launch keeps no end
    assert last["ended"] >= last["started"]
    head = (exp / "results.md").read_text().split("## Provenance", 1)[1].split("\n## ", 1)[0]
    assert f"ended {last['ended']}" in head
