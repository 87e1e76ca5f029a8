"""The Ray side of a search: the PRUNED-aware Optuna searcher and the ASHA scheduler on ``task``.

The space, r_frac and the ASHA arithmetic are :mod:`delo.sweep.search` (no Ray).
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from delo.metric_keys import TASK
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
        super().__init__(*args, **kwargs)
        self.num_tasks = num_tasks
        self.objective = objective

    @property
    def study(self):
        """The Optuna study the searcher tells (read it for trial states and the best value)."""
        return self._ot_study

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:  # FAIL even when a partial result comes along (the parent would tell COMPLETE with it)
            result = None
        elif result and result.get(TASK) is not None and result[TASK] < self.num_tasks:
            if trial_id in self._completed_trials:
                return
            from optuna.trial import TrialState

            self._ot_study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        elif result and self.objective != self.metric and self.objective in result:
            result = {**result, self.metric: result[self.objective]}
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(sweep: Sweep) -> PrunedAwareOptunaSearch:
    s = sweep.spec.search
    points = [sweep.space.to_optuna_point(p) for p in s.points_to_evaluate]
    return PrunedAwareOptunaSearch(
        space=sweep.space,
        metric=TUNE_METRIC,
        mode=s.mode,
        points_to_evaluate=points or None,
        seed=s.searcher.seed,
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
