"""The progress line's denominator is the sweep's size from the first line, not the trials Tune made so far."""

from types import SimpleNamespace

import yaml

from delo.sweep.progress import SweepProgress


def _trial(exp, name, status, last=None):
    path = str(exp / name)
    return SimpleNamespace(
        trial_id=name, status=status, last_result=last or {}, local_path=path, path=path, num_failures=0
    )


def test_denominator_is_the_grid_size_or_a_question_mark(tmp_path, capsys):
    # Tune has created only two of the grid's 18 trials yet; the callback prints its summary at every step here.
    trials = [
        _trial(tmp_path, "a", "TERMINATED", {"task": 3, "final_ap": 70.0}),
        _trial(tmp_path, "b", "RUNNING", {"task": 1}),
    ]
    SweepProgress("rf", str(tmp_path), 3, 18, interval_s=0).on_step_end(1, trials)
    line = capsys.readouterr().out
    assert line.startswith("[sweep rf] ")
    assert (
        "running 1 | done 1/18 |" in line and "best final_ap 70.00 (a)" in line and "running: b@1/3" in line
    )
    assert yaml.safe_load((tmp_path / "trial_status.yaml").read_text())["total_trials"] == 18
    SweepProgress("s", str(tmp_path), 3, None, interval_s=0).on_step_end(1, trials)
    assert "done 1/? |" in capsys.readouterr().out


def test_rung_log_keeps_the_order_the_scheduler_saw_and_its_stops(tmp_path):
    from delo.sweep.experiment import read_rung_log
    from delo.sweep.progress import RungLog

    log = RungLog(str(tmp_path / "elsewhere"), rungs=[1, 2, 4], metric="ap_seen", num_tasks=4)
    a, b = _trial(tmp_path, "a", "RUNNING"), _trial(tmp_path, "b", "RUNNING")
    for trial, task, ap, done in ((a, 1, 60.0, False), (b, 1, 40.0, True), (a, 2, 61.0, False), (a, 3, 62.0, False),
                                  (a, 4, 63.0, True)):  # fmt: skip
        log.on_trial_result(1, [a, b], trial, {"task": task, "ap_seen": ap, "done": done})
    # only rungs below the last task (a rung at 4 of 4 decides nothing); the folder the trials live in
    assert read_rung_log(tmp_path) == [
        {"trial": "a", "task": 1, "value": 60.0, "stop": False},
        {"trial": "b", "task": 1, "value": 40.0, "stop": True},
        {"trial": "a", "task": 2, "value": 61.0, "stop": False},
    ]


class _CsvTrial:
    """What Tune's CSV logger reads of a trial (hashable: it keys its open files by trial)."""

    def __init__(self, folder):
        self.local_path, self.checkpoint = str(folder), None

    def init_local_path(self):
        pass


def test_a_continued_progress_csv_keeps_its_header(tmp_path):
    """A trial resumed just before its last task: the first row after the restart has the final_* columns too,
    and goes under the file's own header (Ray's writer shifted it under its own columns)."""
    import csv

    from delo.sweep.progress import ProgressCsv

    (tmp_path / "progress.csv").write_text("task,ap_seen\n1,50.0\n2,49.0\n")
    ProgressCsv().log_trial_result(1, _CsvTrial(tmp_path), {"task": 3, "ap_seen": 48.0, "final_ap": 48.0})
    rows = list(csv.reader((tmp_path / "progress.csv").open()))
    assert rows == [["task", "ap_seen"], ["1", "50.0"], ["2", "49.0"], ["3", "48.0"]]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    ProgressCsv().log_trial_result(1, _CsvTrial(fresh), {"task": 1, "ap_seen": 50.0})
    assert (fresh / "progress.csv").read_text().splitlines() == ["task,ap_seen", "1,50.0"]
