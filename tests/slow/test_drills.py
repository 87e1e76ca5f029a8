"""The drills of issue 26 (delo.tools.drill), small, on one Ray cluster for the module: a head without CPUs and
worker nodes a and b of one CPU each, separate `ray start` processes with private temp dirs, real tiny_test
sweeps through launch/sweep.py --address. The full drills are `python launch/drill.py chaos` (16 trials, 6
worker kills and the driver), `chaos --search`, `nodes` (8 trials) and `asha` (64 samples).

The nodes test extends issue 17's fault drill (a worker node's raylet killed under a running sweep, the trial
resumed elsewhere from its task checkpoint, its result that of an undisturbed run) with a node joining after, so
it runs last: it takes node a away. Nothing here depends on how long anything takes: the chaos process and the
node removal act on events (a worker there, a task reported, a trial finished), and every check reads the sweep
folder afterwards."""

import pytest

from delo.tools import drill, node_drill

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # a Ray of its own: not beside the shared one


@pytest.fixture(scope="module")
def cluster():
    with drill.two_worker_cluster() as cluster:
        yield cluster


def _ok(summary: dict) -> dict:
    print(drill.summary_text(summary))
    assert summary["problems"] == [] and summary["ok"]
    assert summary["repeated_tasks"] == {} and summary["folder_problems"] == []
    return summary


def test_asha_stops_what_its_rule_stops_and_the_study_agrees(cluster, tmp_path):
    summary = drill.asha(samples=12, num_tasks=3, grace=1, seed=0, workdir=tmp_path, cluster=cluster)
    print(drill.summary_text(summary))
    assert summary["problems"] == [] and summary["ok"]
    rungs = summary["asha"]["rungs"]
    assert sorted(rungs) == [1, 2] and rungs[1]["reached"] == 12
    for rung in rungs.values():
        assert rung["stopped"] == rung["stopped_by_the_rule"]
    stopped = sum(r["stopped"] for r in rungs.values())
    assert summary["study"]["states"].get("PRUNED", 0) == stopped
    assert summary["study"]["states"].get("COMPLETE", 0) == 12 - stopped
    assert summary["study"]["best"]["value"] == summary["best"]["final_ap"]


def test_chaos_grid_survives_a_killed_worker_and_a_killed_driver(cluster, tmp_path):
    summary = _ok(drill.chaos(trials=4, kills=1, seed=0, interval_s=1.0, workdir=tmp_path, cluster=cluster))
    assert summary["kills"] == {"worker": 1, "driver": 1} and summary["resumes"] == 1
    assert summary["exit_status"] == 0 and summary["retries"] >= 1
    assert summary["equal"] == "4/4"  # every trial's result is its undisturbed run's


def test_a_node_leaves_and_a_new_one_joins_under_a_running_grid(cluster, tmp_path):
    summary = _ok(node_drill.nodes(trials=4, workdir=tmp_path, cluster=cluster))
    trial, task = summary["removed_during"]
    assert 1 <= task < 3  # removed between two tasks of a trial on a, which then resumed from its checkpoint
    assert summary["moved_off_a"] == [trial] and summary["retries"] >= 1
    assert summary["trials_on"]["b"] >= 1 and summary["trials_on"]["c"] >= 1  # the survivor and the newcomer
    assert summary["equal"] == "4/4"
