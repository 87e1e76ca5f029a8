"""Search pieces without a cluster: r < E mapping, define-by-run space, PRUNED rule, ASHA rungs."""

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler

from delo.sweep.search import SearchSpace, asha_rungs, frac_for_r, r_from_frac
from delo.sweep.searcher import PrunedAwareOptunaSearch, make_scheduler, make_searcher
from delo.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("E", range(2, 33))
def test_r_mapping_covers_1_to_E_minus_1(E):
    fracs = [i / 10000 for i in range(10001)]
    assert {r_from_frac(E, f) for f in fracs} == set(range(1, E))
    for r in range(1, E):
        assert r_from_frac(E, frac_for_r(E, r)) == r


def test_space_returns_derived_keys_not_suggested_names():
    sweep = load_sweep(ROOT / "sweeps/search.yaml")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        out = sweep.space(trial)
        assert set(out) == {"model.r", "model.beta"}
        E = trial.params["model.E"]
        assert 4 <= E <= 32 and 1 <= out["model.r"] < E
        assert 0.9 <= out["model.beta"] <= 0.999
        study.tell(trial, 1.0)


def test_paper_point_first():
    sweep = load_sweep(ROOT / "sweeps/search.yaml")
    searcher = make_searcher(sweep)
    config = searcher.suggest("t0")
    assert config["model.E"] == 16 and config["model.r"] == 4
    assert config["loss.lambda1"] == pytest.approx(0.1) and config["model.beta"] == pytest.approx(0.99)


def _searcher(T=5, objective="ap_seen"):
    space = SearchSpace(load_sweep(ROOT / "sweeps/search.yaml").spec.search.space, base_E=16)
    return PrunedAwareOptunaSearch(
        space=space, metric="ap_seen", mode="max", seed=0, num_tasks=T, objective=objective
    )


def _states(s):
    return {t.number: (t.state, t.value) for t in s.study.get_trials(deepcopy=False)}


def test_early_stopped_trial_is_pruned_not_complete():
    s = _searcher()
    for tid in ("a", "b", "c", "d"):
        s.suggest(tid)
    s.on_trial_result("a", {"task": 1, "ap_seen": 90.0, "training_iteration": 1})
    s.on_trial_result("a", {"task": 2, "ap_seen": 95.0, "training_iteration": 2})
    s.on_trial_complete("a", {"task": 2, "ap_seen": 95.0})  # ASHA stop at rung 2: high but partial
    s.on_trial_complete("b", {"task": 5, "ap_seen": 60.0, "final_ap": 60.0})
    s.on_trial_complete("c", {"task": 3, "ap_seen": 50.0}, error=True)
    s.on_trial_complete("d", None)
    states = _states(s)
    assert states[0][0] == TrialState.PRUNED  # Optuna keeps the last intermediate value of a pruned trial
    assert states[1] == (TrialState.COMPLETE, 60.0)
    assert states[2][0] == TrialState.FAIL
    assert states[3][0] == TrialState.PRUNED
    assert s.study.best_trial.number == 1  # the stopped trial's 95 never wins
    s.on_trial_complete("a", {"task": 5, "ap_seen": 99.0})  # a second completion is ignored
    assert _states(s)[0][0] == TrialState.PRUNED


def test_final_ap_objective_tells_final_ap():
    s = _searcher(objective="final_ap")
    s.suggest("a")
    s.on_trial_complete("a", {"task": 5, "ap_seen": 61.0, "final_ap": 62.0})
    assert _states(s)[0] == (TrialState.COMPLETE, 62.0)


def test_searcher_pickles_for_restore(tmp_path):
    s = _searcher()
    s.suggest("a")
    s.save(str(tmp_path / "s.pkl"))
    t = _searcher()
    t.restore(str(tmp_path / "s.pkl"))
    assert t.num_tasks == 5 and "a" in t._ot_trials


@pytest.mark.parametrize(
    "T,grace,rf,expected",
    [
        (5, 2, 2, [2, 4]),
        (10, 2, 2, [2, 4, 8]),
        (10, 2, 3, [2, 6]),
        (10, 1, 2, [1, 2, 4, 8]),
        (3, 2, 2, [2]),
        (4, 2, 2, [2, 4]),
    ],
)
def test_asha_rungs(T, grace, rf, expected):
    assert asha_rungs(T, grace, rf) == expected
    sched = ASHAScheduler(time_attr="task", max_t=T, grace_period=grace, reduction_factor=rf, brackets=1)
    # Ray's ASHA compares trials at exactly those tasks (a rung at T decides nothing: every trial ends there)
    assert _stops(sched, T) == ([T], [m for m in expected if m < T] + [T])


def _stops(sched, tasks: int) -> tuple[list[int], list[int]]:
    """The tasks at which ``sched`` stops the best trial (at its last task only) and a trial worse than every
    other (at each rung too), through Tune's scheduler calls: a leader reports AP 100 after each task, then a
    laggard reports 0 after each task."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    sched.set_search_properties("ap_seen", "max")  # what Tune passes from the search's metric
    leader, laggard = SimpleNamespace(trial_id="leader"), SimpleNamespace(trial_id="laggard")
    for trial in (leader, laggard):
        sched.on_trial_add(None, trial)
    stops = []
    for trial, ap in ((leader, 100.0), (laggard, 0.0)):
        actions = [
            sched.on_trial_result(None, trial, {"task": t, "ap_seen": ap}) for t in range(1, tasks + 1)
        ]
        stops.append([t for t, action in enumerate(actions, 1) if action == TrialScheduler.STOP])
    return stops[0], stops[1]


def test_scheduler_from_spec():
    sweep = load_sweep(ROOT / "sweeps/search.yaml")  # 5 tasks, grace period 2: reduction factor 2
    assert _stops(make_scheduler(sweep), 5) == ([5], [2, 4, 5])
    paper = load_sweep(ROOT / "sweeps/search.yaml", profile="food101")  # 10 tasks: reduction factor 3
    assert _stops(make_scheduler(paper), 10) == ([10], [2, 6, 10])
    assert make_scheduler(load_sweep(ROOT / "sweeps/search.yaml", ["search.scheduler.type=none"])) is None


def test_sqlite_study_survives_a_searcher_restore(tmp_path):
    """A resumed driver unpickles the searcher; its study must still write to the same SQLite file."""
    from delo.sweep.experiment import optuna_storage_url
    from delo.sweep.searcher import study_storage

    sweep = load_sweep(ROOT / "sweeps/search.yaml", storage=tmp_path)
    s = make_searcher(sweep, storage=study_storage(sweep))
    s.suggest("a")
    s.on_trial_complete("a", {"task": 2, "ap_seen": 70.0})  # stopped early
    s.save(str(tmp_path / "s.pkl"))
    t = make_searcher(sweep)
    t.restore(str(tmp_path / "s.pkl"))
    t.suggest("b")
    t.on_trial_complete("b", {"task": 5, "ap_seen": 71.0})
    study = optuna.load_study(study_name="search", storage=optuna_storage_url(sweep.experiment_dir))
    assert study.metric_names == [sweep.spec.search.metric]  # the value told: AP over seen tasks at the end
    assert [(x.state, x.value) for x in study.trials] == [
        (TrialState.PRUNED, None),
        (TrialState.COMPLETE, 71.0),
    ]


def test_multi_objective_searcher_tells_both_values_or_fail():
    sweep = load_sweep(ROOT / "sweeps/pareto.yaml")
    s = make_searcher(sweep)
    assert s.metric == ["final_ap", "params_trainable"] and s.mode == ["max", "min"]
    for tid in "abc":
        s.suggest(tid)
    s.on_trial_result("a", {"task": 1, "ap_seen": 50.0, "training_iteration": 1})  # no intermediate values
    s.on_trial_complete("a", {"task": 5, "ap_seen": 60.0, "final_ap": 60.0, "params_trainable": 1234})
    s.on_trial_complete("b", {"task": 5, "ap_seen": 61.0, "final_ap": 61.0})  # finished, count missing
    s.on_trial_complete("c", {"task": 3, "ap_seen": 40.0})  # stopped before the end
    trials = s.study.get_trials(deepcopy=False)
    assert s.study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert s.study.metric_names == ["final_ap", "params_trainable"]  # what optuna-dashboard labels the axes
    assert (trials[0].state, trials[0].values) == (TrialState.COMPLETE, [60.0, 1234.0])
    assert trials[1].state == TrialState.FAIL and trials[2].state == TrialState.PRUNED


@pytest.mark.parametrize(
    "sets,problem",
    [
        (["search.scheduler.type=asha"], "needs search.scheduler.type: none"),
        (["search.objectives=[{metric: final_ap, mode: max}]"], "list two or more"),
        (
            ["search.objectives=[{metric: test_final_ap, mode: max}, {metric: params_trainable, mode: min}]"],
            "reads final_ap",
        ),
    ],
)
def test_multi_objective_spec_problems(sets, problem):
    from delo.config import ConfigError

    with pytest.raises(ConfigError, match=problem):
        load_sweep(ROOT / "sweeps/pareto.yaml", sets)


# ----------------------------------------------------------------------------------------------------------
# Each distribution owns its behaviour


class _Trial:
    """Records Optuna suggestions and answers each with a fixed value (``x`` for floats, ``low`` for ints)."""

    def __init__(self, x=0.5):
        self.x, self.calls = x, []

    def suggest_int(self, name, low, high, log=False):
        self.calls.append(("int", name, low, high, log))
        return low

    def suggest_float(self, name, low, high, log=False):
        self.calls.append(("float", name, low, high, log))
        return self.x

    def suggest_categorical(self, name, values):
        self.calls.append(("choice", name, values))
        return values[-1]


def _dist(**fields):
    from pydantic import TypeAdapter

    from delo.sweep.search import Distribution

    return TypeAdapter(Distribution).validate_python(fields)


# (key, entry, Optuna name, what it suggests, the value the fake trial turns into, dry-run text, TensorBoard
# domain, run-config values at the ends)
DISTRIBUTIONS = [
    (
        "model.E",
        {"type": "int", "low": 4, "high": 32, "log": True},
        "model.E",
        ("int", "model.E", 4, 32, True),
        4,
        "int log [4, 32]",
        (4, 32),
        [4, 32],
    ),
    (
        "loss.lambda1",
        {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
        "loss.lambda1",
        ("float", "loss.lambda1", 1e-3, 1.0, True),
        0.5,
        "float log [0.001, 1]",
        (0.001, 1.0),
        [0.001, 1.0],
    ),
    (
        "train.lr",
        {"type": "choice", "values": [0.1, 0.2]},
        "train.lr",
        ("choice", "train.lr", [0.1, 0.2]),
        0.2,
        "choice [0.1, 0.2]",
        [0.1, 0.2],
        [0.1, 0.2],
    ),
    (
        "model.beta",
        {"type": "one_minus", "low": 1e-3, "high": 0.1, "log": True},
        "model.one_minus_beta",
        ("float", "model.one_minus_beta", 1e-3, 0.1, True),
        0.5,  # 1 - x
        "1 - x, x log [0.001, 0.1]",
        (0.9, 0.999),
        [0.999, 0.9],
    ),
]


@pytest.mark.parametrize("key,entry,name,call,value,text,domain,ends", DISTRIBUTIONS)
def test_distribution_methods(key, entry, name, call, value, text, domain, ends):
    d = _dist(**entry)
    trial = _Trial()
    space = SearchSpace({key: d}, base_E=16)
    assert d.optuna_name(key) == name
    assert d.sample(trial, key, {}, base_E=16) == value and trial.calls == [call]
    assert d.describe() == text
    assert d.hparams_domain(space) == pytest.approx(domain)
    assert d.ends() == pytest.approx(ends)
    assert d.corners(key, space) == [(f"search.space.{key}={v}", {key: v}) for v in d.ends()]
    assert d.problems(key, {key: d}) == []
    assert d.to_optuna(key, {key: value}, base_E=16) == pytest.approx(
        0.5 if entry["type"] == "one_minus" else value
    )


def test_r_frac_reads_E():
    d = _dist(type="r_frac")
    E = _dist(type="int", low=4, high=32)
    assert d.optuna_name("model.r") == "model.r_frac"
    trial = _Trial(x=0.5)
    # E = 16: r = min(15, 1 + floor(0.5 * 15)) = 8; without a drawn E the base's (8): 1 + floor(3.5) = 4
    assert d.sample(trial, "model.r", {"model.E": 16}, base_E=8) == 8
    assert d.sample(trial, "model.r", {}, base_E=8) == 4
    assert trial.calls == [("float", "model.r_frac", 0.0, 1.0, False)] * 2
    assert d.to_optuna("model.r", {"model.E": 16, "model.r": 4}, base_E=8) == pytest.approx(3.5 / 15)
    assert d.to_optuna("model.r", {"model.r": 4}, base_E=8) == pytest.approx(3.5 / 7)
    searched = SearchSpace({"model.r": d, "model.E": E}, base_E=8)
    assert list(searched.space) == ["model.E", "model.r"]  # E first, so r reads the trial's E
    assert d.hparams_domain(searched) == (1, 31)
    assert d.hparams_domain(SearchSpace({"model.r": d}, base_E=8)) == (1, 7)
    assert d.describe() == "r = min(E-1, 1 + floor(r_frac * (E-1))), r_frac uniform [0, 1]"
    assert d.corners("model.r", searched) == [
        ("search.space.model.r at E=4, r_frac=0", {"model.r": 1, "model.E": 4}),
        ("search.space.model.r at E=4, r_frac=1", {"model.r": 3, "model.E": 4}),
        ("search.space.model.r at E=32, r_frac=0", {"model.r": 1, "model.E": 32}),
        ("search.space.model.r at E=32, r_frac=1", {"model.r": 31, "model.E": 32}),
    ]
    assert d.corners("model.r", SearchSpace({"model.r": d}, base_E=8))[-1] == (
        "search.space.model.r at E=8, r_frac=1",
        {"model.r": 7},
    )
    assert d.problems("model.r", {"model.E": E}) == []
    assert d.problems("loss.lambda2", {"model.E": _dist(type="choice", values=[4, 8])}) == [
        "type r_frac derives model.r only",
        "r_frac needs model.E of type int (got choice)",
    ]
    assert d.point_problem("model.r", 4, 0.23) is None


def test_distribution_problems_and_points_outside():
    assert _dist(type="int", low=4.5, high=3).problems("model.E", {}) == [
        "empty range low=4.5 >= high=3",
        "int bounds must be whole numbers",
    ]
    assert _dist(type="float", low=0, high=1, log=True).problems("train.lr", {}) == [
        "a log scale needs low > 0 (got 0)"
    ]
    assert _dist(type="one_minus", low=0, high=2).problems("model.beta", {}) == [
        "one_minus draws x in (0, 1]; got [0, 2]"
    ]
    assert _dist(type="choice", values=[]).problems("train.lr", {}) == [
        "choice needs a non-empty 'values' list"
    ]
    assert _dist(type="choice", values=[[1]]).problems("train.lr", {}) == [
        "choice values must be plain numbers, strings, booleans or null"
    ]
    assert _dist(type="int", low=4, high=32).point_problem("model.E", 40, 40) == (
        "model.E=40 lies outside the space [4, 32]"
    )
    assert _dist(type="one_minus", low=1e-3, high=0.1).point_problem("model.beta", 0.5, 0.5) == (
        "model.beta=0.5 lies outside the space [0.001, 0.1]"
    )
    assert _dist(type="choice", values=[0.1, 0.2]).point_problem("train.lr", 0.3, 0.3) == (
        "train.lr=0.3 is not one of [0.1, 0.2]"
    )
    assert _dist(type="float", low=0.1, high=1).point_problem("train.lr", 0.5, 0.5) is None


def test_every_distribution_of_the_union_implements_its_behaviour():
    """Adding a distribution is one class: everything the space, the checks and the dry run call is on it."""
    import typing

    from delo.sweep.search import Distribution

    union = typing.get_args(typing.get_args(Distribution)[0])
    assert {c.model_fields["type"].annotation.__args__[0] for c in union} == {
        "int",
        "float",
        "choice",
        "one_minus",
        "r_frac",
    }
    examples = {k: entry for k, entry, *_ in DISTRIBUTIONS} | {"model.r": {"type": "r_frac"}}
    space = SearchSpace({k: _dist(**e) for k, e in examples.items()}, base_E=16)
    for key, d in space.space.items():
        assert d.describe() and d.hparams_domain(space) is not None and d.corners(key, space)


def test_a_resumed_searcher_keeps_the_study_one_trial_per_tune_trial(tmp_path):
    """A driver killed between two of Tune's snapshots leaves the study (written at once) ahead of the searcher
    Tune restores: trials asked or told after the snapshot. The study stays the record: a lost study trial goes to
    the next new Tune trial, and a trial the study already closed is neither reported nor told again."""
    from delo.sweep.experiment import optuna_storage_url
    from delo.sweep.searcher import study_storage

    sweep = load_sweep(ROOT / "sweeps/search.yaml", storage=tmp_path)
    s = make_searcher(sweep, storage=study_storage(sweep))
    s.suggest("a"), s.suggest("b")
    s.save(str(tmp_path / "snapshot.pkl"))  # Tune's last snapshot: a and b running
    s.on_trial_result("a", {"task": 1, "ap_seen": 70.0, "training_iteration": 1})
    s.on_trial_complete("a", {"task": 2, "ap_seen": 70.0})  # after it: ASHA stopped a at task 2
    lost_running, lost_pruned = s.suggest("c"), s.suggest("d")
    s.on_trial_complete("d", {"task": 2, "ap_seen": 10.0})

    t = make_searcher(sweep)  # the resumed driver's searcher, restored from the snapshot
    t.restore(str(tmp_path / "snapshot.pkl"))
    assert t.recorded_outcome("a") == ("PRUNED", 2) and t.recorded_outcome("b") is None
    t.on_trial_result("a", {"task": 1, "ap_seen": 70.0, "training_iteration": 1})  # Tune runs a again
    t.on_trial_complete("a", {"task": 2, "ap_seen": 70.0})  # Optuna would refuse both
    assert t.suggest("e") == lost_running and t.suggest("f") == lost_pruned
    assert t.recorded_outcome("f") == ("PRUNED", 2)
    t.suggest("g")
    t.on_trial_complete("b", {"task": 5, "ap_seen": 80.0})
    study = optuna.load_study(study_name="search", storage=optuna_storage_url(sweep.experiment_dir))
    assert [x.state for x in study.trials] == [
        TrialState.PRUNED, TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED, TrialState.RUNNING,
    ]  # fmt: skip


def test_study_aware_asha_repeats_the_studys_outcome_and_decides_the_rest():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from delo.sweep.searcher import StudyAwareASHA

    recorded = {"p": ("PRUNED", 2), "c": ("COMPLETE", None)}
    searcher = SimpleNamespace(recorded_outcome=recorded.get)
    sched = StudyAwareASHA(time_attr="task", max_t=5, grace_period=2, reduction_factor=2, brackets=1,
                           searcher=searcher)  # fmt: skip
    sched.set_search_properties("ap_seen", "max")
    trials = {n: SimpleNamespace(trial_id=n) for n in ("leader", "p", "c", "laggard")}
    for trial in trials.values():
        sched.on_trial_add(None, trial)

    def stops(name: str, ap: float) -> list[int]:
        actions = [sched.on_trial_result(None, trials[name], {"task": t, "ap_seen": ap}) for t in range(1, 6)]
        return [t for t, action in enumerate(actions, 1) if action == TrialScheduler.STOP]

    assert stops("leader", 100.0) == [5]
    assert stops("p", 100.0) == [
        2,
        3,
        4,
        5,
    ]  # pruned at task 2 by the killed driver's ASHA, whatever it reports
    assert stops("c", 0.0) == [5]  # completed before: never stopped early
    assert stops("laggard", 0.0) == [2, 4, 5]  # an open trial: ASHA's own rule


@pytest.mark.parametrize("seed,mode", [(0, "max"), (1, "max"), (2, "min"), (3, "max")])
def test_asha_replay_stops_the_trials_rays_asha_stops(seed, mode):
    """ASHA's rule replayed on results in the order a scheduler saw them (delo.sweep.search.asha_replay, the ASHA
    drill's check) stops the same trials at the same rungs as Ray's own ASHA: random values, about four trials
    interleaved as concurrent trials are, rungs at tasks 1, 2 and 4 of 5."""
    import random
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from delo.sweep.search import asha_replay

    rng = random.Random(seed)
    sched = ASHAScheduler(time_attr="task", max_t=5, grace_period=1, reduction_factor=2, brackets=1)
    sched.set_search_properties("ap_seen", mode)
    live = [SimpleNamespace(trial_id=f"t{i}", task=1) for i in range(24)]
    for trial in live:
        sched.on_trial_add(None, trial)
    arrivals, stopped = [], {}
    while live:
        trial = rng.choice(live[:4])
        ap = rng.uniform(0, 100)
        arrivals.append((trial.trial_id, trial.task, ap))
        action = sched.on_trial_result(None, trial, {"task": trial.task, "ap_seen": ap})
        if action == TrialScheduler.STOP:
            live.remove(trial)
            if trial.task < 5:
                stopped.setdefault(trial.task, []).append(trial.trial_id)
        trial.task += 1
    replayed = {rung: trials for rung, trials in asha_replay(arrivals, 5, 1, 2, mode).items() if trials}
    assert replayed == stopped and sum(map(len, stopped.values())) >= 10
