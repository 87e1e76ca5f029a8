"""The progress line's denominator is the sweep's size from the first line, not the trials Tune made so far."""

from types import SimpleNamespace

from delo.sweep.progress import SweepProgress


def _trial(name, status, last=None):
    return SimpleNamespace(
        trial_id=name, status=status, last_result=last or {}, local_path=f"/x/{name}", path=f"/x/{name}"
    )


def test_denominator_is_the_grid_size_or_a_question_mark(tmp_path):
    # Tune has created only two of the grid's 18 trials yet.
    trials = [_trial("a", "TERMINATED", {"task": 3, "final_ap": 70.0}), _trial("b", "RUNNING", {"task": 1})]
    line = SweepProgress("rf", str(tmp_path), 3, 18)._summary(trials)
    assert "done 1/18 |" in line and "best final_ap 70.00 (a)" in line and "b@1/3" in line
    assert "done 1/? |" in SweepProgress("s", str(tmp_path), 3, None)._summary(trials)
