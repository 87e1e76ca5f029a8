"""The Ray side of a search: the PRUNED-aware Optuna searcher and the ASHA scheduler on ``task``.

The space, r_frac and the ASHA arithmetic are :mod:`delo.sweep.search` (no Ray).
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from delo.metric_keys import TASK
from delo.sweep.experiment import optuna_storage_url
from delo.sweep.search import TUNE_METRIC, asha_reduction_factor
from delo.sweep.spec import Sweep


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells PRUNED, not COMPLETE, for a trial ASHA stopped early.

    On an ASHA stop Tune calls ``on_trial_complete`` with the last partial result; the stock class would tell
    COMPLETE with that (often higher, early) ``ap_seen`` and TPE could prefer a stopped trial. Rule: no error and
    ``result["task"] < num_tasks`` -> PRUNED; an error -> FAIL; otherwise COMPLETE with ``objective`` (e.g.
    ``final_ap``) as the told value when it differs from the per-report metric.
    """

    def __init__(self, *args, num_tasks: int, objective: str = TUNE_METRIC, **kwargs):
        self.num_tasks = num_tasks
        self.objective = objective  # before the parent's __init__, which sets the study up
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode) -> None:
        """The stock study, with its objectives named (optuna-dashboard and optuna.visualization show the names,
        not "Objective 0")."""
        super()._setup_study(mode)
        import warnings

        names = list(self.metric) if isinstance(self.metric, list) else [self.objective]
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore")
            self._ot_study.set_metric_names(names)

    @property
    def study(self):
        """The Optuna study the searcher tells (read it for trial states and the best value)."""
        return self._ot_study

    # A driver killed between two of Tune's snapshots, then resumed (ray-tune.md §6), leaves the study (SQLite,
    # written at once) ahead of the searcher Tune restores from its last snapshot: study trials asked, or even
    # told, after it, which no Tune trial holds any more; and trials told after it, which Tune runs again from a
    # checkpoint. The study stays the record: a lost study trial is taken over by the next new Tune trial, and a
    # trial the study already closed is neither reported nor told again (Optuna refuses both), while
    # StudyAwareASHA ends it as the study says, so that Tune's trials and the study's agree one to one.

    def suggest(self, trial_id: str) -> dict | None:
        """A new Tune trial first takes over a study trial no Tune trial holds (its suggestion stands); only when
        there is none is the study asked for a new one."""
        if callable(self._space) and trial_id not in self._ot_trials:
            orphan = self._orphan()
            if orphan is not None:
                self._ot_trials[trial_id] = orphan  # the space's suggest_* calls read its stored values back
        return super().suggest(trial_id)

    def _orphan(self):
        from optuna.trial import Trial, TrialState

        held = {t._trial_id for t in self._ot_trials.values()}  # Optuna has no public id of a live Trial
        states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        for frozen in self._ot_study.get_trials(deepcopy=False, states=states):
            if frozen._trial_id not in held:
                return Trial(self._ot_study, frozen._trial_id)
        return None

    def recorded_outcome(self, trial_id: str) -> tuple[str, int | None] | None:
        """The study's outcome of a Tune trial it already closed: ("PRUNED", the task ASHA stopped it at),
        ("COMPLETE", None) or ("FAIL", None); None while it is open (or unknown here)."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return None
        frozen = ot_trial.storage.get_trial(ot_trial._trial_id)
        if not frozen.state.is_finished():
            return None
        return frozen.state.name, frozen.user_attrs.get(TASK)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.recorded_outcome(trial_id) is not None:  # a rerun repeats what the study saw
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._completed_trials and self.recorded_outcome(trial_id) is not None:
            self._completed_trials.add(trial_id)  # told once, by the killed driver (Optuna refuses a second)
            return
        if isinstance(self.metric, list) and result and not error and result.get(TASK) == self.num_tasks:
            missing = [m for m in self.metric if result.get(m) is None]
            if missing:  # a finished trial without an objective is a broken run, not a pruned one
                result, error = None, True
        if error:  # FAIL even when a partial result comes along (the parent would tell COMPLETE with it)
            result = None
        elif result and result.get(TASK) is not None and result[TASK] < self.num_tasks:
            if trial_id in self._completed_trials:
                return
            from optuna.trial import TrialState

            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr(TASK, result[TASK])  # where ASHA stopped it (a resumed driver repeats it)
            self._ot_study.tell(ot_trial, None, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        elif (
            isinstance(self.metric, str)
            and result
            and self.objective != self.metric
            and self.objective in result
        ):
            result = {**result, self.metric: result[self.objective]}
        super().on_trial_complete(trial_id, result=result, error=error)


def study_storage(sweep: Sweep):
    """The sweep's Optuna storage: SQLite in the experiment folder. Only the driver writes it (the searcher runs
    there), a resumed driver reopens it through the pickled searcher, and Optuna's own tools read it while the
    sweep runs."""
    from optuna.storages import RDBStorage

    sweep.experiment_dir.mkdir(parents=True, exist_ok=True)
    return RDBStorage(optuna_storage_url(sweep.experiment_dir))


def make_searcher(sweep: Sweep, storage=None) -> PrunedAwareOptunaSearch:
    """The sweep's searcher; ``storage`` an Optuna storage (None: in memory), the study named after the sweep.

    Multi-objective: Ray's metric/mode lists (``OptunaSearch`` creates the study with one direction per
    objective and tells the list of values). Tune checks that every report holds every searcher metric, while
    the objectives exist only in a trial's last report, so the driver turns that check off for such a sweep
    (:func:`delo.sweep.driver.relax_metric_check`)."""
    s = sweep.spec.search
    points = [sweep.space.to_optuna_point(p) for p in s.points_to_evaluate]
    if s.multi_objective:
        metric, mode = [o.metric for o in s.objectives], [o.mode for o in s.objectives]
    else:
        metric, mode = TUNE_METRIC, s.mode
    return PrunedAwareOptunaSearch(
        space=sweep.space,
        metric=metric,
        mode=mode,
        points_to_evaluate=points or None,
        seed=s.searcher.seed,
        study_name=sweep.name,
        storage=storage,
        num_tasks=sweep.num_tasks,
        objective=s.metric,
    )


class StudyAwareASHA(ASHAScheduler):
    """ASHA on ``task`` that, for a trial the study already closed, repeats the study's outcome instead of
    deciding again: stop at the task the study says it was pruned at, otherwise go on to the last task.

    Only a resumed driver meets such trials (see PrunedAwareOptunaSearch); Tune keeps no scheduler state across
    a restore (it unpickles the scheduler as the Tuner was built), so ASHA would otherwise decide afresh, and a
    trial the study holds as PRUNED could now complete (or the reverse). The searcher is the Tuner's own (one
    pickle: the reference survives the restore, and Tune restores the searcher's state into that object)."""

    def __init__(self, *args, searcher: PrunedAwareOptunaSearch | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.searcher = searcher

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        recorded = self.searcher.recorded_outcome(trial.trial_id) if self.searcher is not None else None
        if recorded is None:
            return super().on_trial_result(tune_controller, trial, result)
        state, stopped_at = recorded
        task = result.get(TASK, 0)
        if task >= self._max_t or (state == "PRUNED" and stopped_at is not None and task >= stopped_at):
            return self.STOP
        return self.CONTINUE


def make_scheduler(sweep: Sweep, searcher: PrunedAwareOptunaSearch | None = None) -> ASHAScheduler | None:
    s = sweep.spec.search.scheduler
    if s.type == "none":
        return None
    return StudyAwareASHA(
        time_attr=TASK,
        max_t=sweep.num_tasks,
        grace_period=s.grace_period,
        reduction_factor=asha_reduction_factor(sweep.num_tasks, s.reduction_factor),
        brackets=1,
        searcher=searcher,
    )
