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

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
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

            self._ot_study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
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


def make_scheduler(sweep: Sweep) -> ASHAScheduler | None:
    s = sweep.spec.search.scheduler
    if s.type == "none":
        return None
    return ASHAScheduler(
        time_attr=TASK,
        max_t=sweep.num_tasks,
        grace_period=s.grace_period,
        reduction_factor=asha_reduction_factor(sweep.num_tasks, s.reduction_factor),
        brackets=1,
    )
