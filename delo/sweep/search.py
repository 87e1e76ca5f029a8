"""Search: the spec's distributions, the define-by-run space Optuna samples, r from r_frac, ASHA arithmetic (no Ray).

The Ray side (the PRUNED-aware Optuna searcher and the ASHA scheduler objects) is :mod:`delo.sweep.searcher`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from delo.config import VALID_KEYS, apply_overrides, build_config, build_or_collect, key_problem
from delo.metric_keys import AP_SEEN, OBJECTIVE_METRICS, SEARCH_METRICS

TUNE_METRIC = AP_SEEN
"""The metric Tune, ASHA and the searcher's per-report hook read: present in every report (final_ap is not)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _sibling(key: str, leaf: str) -> str:
    """``model.r`` -> ``model.<leaf>``: the Optuna name of a derived key's helper parameter."""
    parent, _, _ = key.rpartition(".")
    return f"{parent}.{leaf}" if parent else leaf


class _Distribution(_Strict):
    """One entry of ``search.space``, which owns everything about it: the Optuna parameter it suggests, the
    run-config value that parameter becomes (and back, for points to evaluate), its TensorBoard domain, its
    dry-run text and what load_sweep checks. ``key`` is always the run-config key the entry sets."""

    reads_E: ClassVar[bool] = False
    """Whether the value depends on the trial's model.E (the space samples such entries after E)."""

    def optuna_name(self, key: str) -> str:
        """The Optuna parameter: the key itself, or the helper a derived key comes from (the space returns it)."""
        return key

    def sample(self, trial, key: str, drawn: Mapping[str, Any], base_E: int) -> Any:
        """Suggest on an Optuna trial; ``key``'s run-config value (``drawn``: the entries sampled before)."""
        raise NotImplementedError

    def to_optuna(self, key: str, point: Mapping[str, Any], base_E: int) -> Any:
        """A run-config point's value of ``key`` as the Optuna parameter's value (points to evaluate)."""
        return point[key]

    def hparams_domain(self, space: SearchSpace) -> tuple | list:
        """(low, high) or the list of values, for the experiment-level TensorBoard hparams config."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line of the dry run."""
        raise NotImplementedError

    def problems(self, key: str, space: Mapping[str, Distribution]) -> list[str]:
        """What is wrong with the entry itself (its bounds, values, key), each without the location."""
        return []

    def ends(self) -> list[Any]:
        """The run-config values at the ends of the entry (load_sweep builds a run config at each)."""
        raise NotImplementedError

    def corners(self, key: str, space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
        """(where, dotted overrides) of each run config load_sweep builds to check the entry's ends."""
        return [(f"search.space.{key}={value}", {key: value}) for value in self.ends()]

    def point_problem(self, key: str, value: Any, optuna_value: Any) -> str | None:
        """Why a point to evaluate's ``value`` (Optuna's ``optuna_value``) lies outside the entry, or None."""
        return None


class _Range(_Distribution):
    """Reals or integers in [low, high], uniform or on a log scale."""

    low: float
    high: float
    log: StrictBool = False

    def _scale(self) -> str:
        return "log " if self.log else ""

    def describe(self) -> str:
        return f"{self.type} {self._scale()}[{self.low:g}, {self.high:g}]"

    def problems(self, key: str, space: Mapping[str, Distribution]) -> list[str]:
        out = []
        if not self.low < self.high:
            out.append(f"empty range low={self.low:g} >= high={self.high:g}")
        if self.log and self.low <= 0:
            out.append(f"a log scale needs low > 0 (got {self.low:g})")
        return out

    def point_problem(self, key: str, value: Any, optuna_value: Any) -> str | None:
        if not self.low <= float(optuna_value) <= self.high:
            return f"{key}={value} lies outside the space [{self.low:g}, {self.high:g}]"
        return None


class IntDist(_Range):
    """Integers in [low, high], uniform or on a log scale."""

    type: Literal["int"]

    def sample(self, trial, key: str, drawn: Mapping[str, Any], base_E: int) -> int:
        return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)

    def hparams_domain(self, space: SearchSpace) -> tuple[int, int]:
        return int(self.low), int(self.high)

    def ends(self) -> list[int]:
        return [int(self.low), int(self.high)]

    def problems(self, key: str, space: Mapping[str, Distribution]) -> list[str]:
        out = super().problems(key, space)
        if self.low != int(self.low) or self.high != int(self.high):
            out.append("int bounds must be whole numbers")
        return out


class FloatDist(_Range):
    """Reals in [low, high], uniform or on a log scale."""

    type: Literal["float"]

    def sample(self, trial, key: str, drawn: Mapping[str, Any], base_E: int) -> float:
        return trial.suggest_float(key, self.low, self.high, log=self.log)

    def hparams_domain(self, space: SearchSpace) -> tuple[float, float]:
        return float(self.low), float(self.high)

    def ends(self) -> list[float]:
        return [self.low, self.high]


class OneMinusDist(_Range):
    """The key is 1 - x with x drawn in [low, high], e.g. beta from 1 - beta on a log scale."""

    type: Literal["one_minus"]

    def optuna_name(self, key: str) -> str:
        return _sibling(key, "one_minus_" + key.rpartition(".")[2])

    def sample(self, trial, key: str, drawn: Mapping[str, Any], base_E: int) -> float:
        return 1.0 - trial.suggest_float(self.optuna_name(key), self.low, self.high, log=self.log)

    def to_optuna(self, key: str, point: Mapping[str, Any], base_E: int) -> float:
        return 1.0 - float(point[key])

    def hparams_domain(self, space: SearchSpace) -> tuple[float, float]:
        return 1.0 - float(self.high), 1.0 - float(self.low)

    def describe(self) -> str:
        return f"1 - x, x {self._scale()}[{self.low:g}, {self.high:g}]"

    def ends(self) -> list[float]:
        return [1.0 - self.low, 1.0 - self.high]

    def problems(self, key: str, space: Mapping[str, Distribution]) -> list[str]:
        out = super().problems(key, space)
        if not (self.low > 0 and self.high <= 1):
            out.append(f"one_minus draws x in (0, 1]; got [{self.low:g}, {self.high:g}]")
        return out


class ChoiceDist(_Distribution):
    """One of ``values``."""

    type: Literal["choice"]
    values: list[Any]

    def sample(self, trial, key: str, drawn: Mapping[str, Any], base_E: int) -> Any:
        return trial.suggest_categorical(key, self.values)

    def hparams_domain(self, space: SearchSpace) -> list:
        return list(self.values)

    def describe(self) -> str:
        return f"choice {self.values}"

    def ends(self) -> list[Any]:
        return list(self.values)

    def problems(self, key: str, space: Mapping[str, Distribution]) -> list[str]:
        if not self.values:
            return ["choice needs a non-empty 'values' list"]
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in self.values):
            return ["choice values must be plain numbers, strings, booleans or null"]
        return []

    def point_problem(self, key: str, value: Any, optuna_value: Any) -> str | None:
        return None if optuna_value in self.values else f"{key}={value!r} is not one of {self.values}"


class RFracDist(_Distribution):
    """model.r from a fraction of model.E - 1 (:func:`r_from_frac`), so r < E always holds."""

    type: Literal["r_frac"]
    reads_E: ClassVar[bool] = True

    def optuna_name(self, key: str) -> str:
        return _sibling(key, "r_frac")

    def sample(self, trial, key: str, drawn: Mapping[str, Any], base_E: int) -> int:
        E = int(drawn.get("model.E", base_E))
        return r_from_frac(E, trial.suggest_float(self.optuna_name(key), 0.0, 1.0))

    def to_optuna(self, key: str, point: Mapping[str, Any], base_E: int) -> float:
        return frac_for_r(int(point.get("model.E", base_E)), int(point[key]))

    def hparams_domain(self, space: SearchSpace) -> tuple[int, int]:
        return 1, max(space.E_values()) - 1

    def describe(self) -> str:
        return "r = min(E-1, 1 + floor(r_frac * (E-1))), r_frac uniform [0, 1]"

    def problems(self, key: str, space: Mapping[str, Distribution]) -> list[str]:
        out = [] if key == "model.r" else ["type r_frac derives model.r only"]
        E = space.get("model.E")
        if E is not None and not isinstance(E, IntDist):
            out.append(f"r_frac needs model.E of type int (got {E.type})")
        return out

    def corners(self, key: str, space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
        """r at both ends of r_frac for E at both ends of its range (or the base's E)."""
        searched = "model.E" in space.space
        out = []
        for E in space.E_values():
            for f in (0.0, 1.0):
                over = {"model.r": r_from_frac(E, f), **({"model.E": E} if searched else {})}
                out.append((f"search.space.{key} at E={E}, r_frac={f:g}", over))
        return out


Distribution = Annotated[
    IntDist | FloatDist | ChoiceDist | RFracDist | OneMinusDist, Field(discriminator="type")
]


class SearcherSpec(_Strict):
    type: Literal["optuna_tpe"] = "optuna_tpe"
    seed: int = 0


class SchedulerSpec(_Strict):
    type: Literal["asha", "none"] = "asha"
    grace_period: int = Field(2, ge=1)
    """First rung, in tasks (>= 2: forgetting shows only from the second task)."""
    reduction_factor: float | None = Field(None, gt=1)
    """None: 2 when T <= 5, else 3."""


class ObjectiveSpec(_Strict):
    """One objective of a multi-objective search, read from a finished trial's last report."""

    metric: str
    mode: Literal["max", "min"]

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in OBJECTIVE_METRICS:
            raise ValueError(f"{value!r}: a multi-objective search reads {', '.join(OBJECTIVE_METRICS)}")
        return value


class SearchSpec(_Strict):
    space: dict[str, Distribution] = Field(min_length=1)
    points_to_evaluate: list[dict[str, Any]] = []
    """Run-config values (dotted keys) tried first, e.g. the paper point."""
    num_samples: int = Field(ge=1)
    searcher: SearcherSpec = SearcherSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    metric: str = "ap_seen"
    mode: Literal["max"] = "max"
    objectives: list[ObjectiveSpec] = []
    """Two or more: a multi-objective search (Optuna's multi-objective TPE, a Pareto front; ``metric`` unused).
    Every objective is read from a trial's last report, so ASHA (one metric per rung) must be off."""

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @field_validator("metric")
    @classmethod
    def _val_only(cls, value: str) -> str:
        if value.startswith("test"):
            raise ValueError(
                f"{value!r} is a test-split metric; search reads val only ({', '.join(SEARCH_METRICS)})"
            )
        if value not in SEARCH_METRICS:
            raise ValueError(f"{value!r} is not a searchable metric; use one of {', '.join(SEARCH_METRICS)}")
        return value


# ----------------------------------------------------------------------------------------------------------
# r < E and the define-by-run space


def r_from_frac(E: int, r_frac: float) -> int:
    """r < E by construction: r = min(E - 1, 1 + floor(r_frac * (E - 1))), covering 1..E-1 as r_frac spans [0, 1]."""
    return min(E - 1, 1 + math.floor(r_frac * (E - 1)))


def frac_for_r(E: int, r: int) -> float:
    """An r_frac that maps back to r (the middle of its interval, so rounding never moves it)."""
    if not 1 <= r < E:
        raise ValueError(f"r={r} must satisfy 1 <= r < E={E}")
    return min(1.0, (r - 0.5) / (E - 1))


class SearchSpace:
    """Define-by-run space for OptunaSearch: suggests every entry and returns the derived run-config keys.

    ``model.r`` (type r_frac) comes from a suggested fraction and the trial's E, so r < E always holds and the
    multivariate TPE keeps r (a dynamic ``suggest_int("r", 1, E - 1)`` would silently drop it). one_minus keys
    are returned as 1 - x. Suggested names are never returned (that would override the suggestion). Picklable
    (a plain class at module level), as Tune's restore needs.
    """

    def __init__(self, space: dict[str, Distribution], base_E: int):
        # E first, so that the entries reading it (r_frac) find the trial's E.
        self.space = dict(sorted(space.items(), key=lambda kv: kv[1].reads_E))
        self.base_E = base_E

    def __call__(self, trial) -> dict[str, Any]:
        drawn: dict[str, Any] = {}
        for key, d in self.space.items():
            drawn[key] = d.sample(trial, key, drawn, self.base_E)
        return {key: value for key, value in drawn.items() if self.space[key].optuna_name(key) != key}

    def to_optuna_point(self, point: dict[str, Any]) -> dict[str, Any]:
        """A run-config point (dotted keys) -> Optuna parameter names and values."""
        return {self.space[k].optuna_name(k): self.space[k].to_optuna(k, point, self.base_E) for k in point}

    def hparam_domains(self) -> dict[str, Any]:
        """name -> (low, high) or list, for the experiment-level TensorBoard hparams config."""
        return {key: d.hparams_domain(self) for key, d in self.space.items()}

    def E_values(self) -> list[int]:
        """model.E at the ends of its searched range, or the base's E when E is not searched."""
        E = self.space.get("model.E")
        return [int(v) for v in E.ends()] if E is not None else [self.base_E]


def search_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """A search trial's Tune config -> its run-config overrides: the keys the space returned (and the seed);
    the suggested helper names (``model.r_frac``, ``model.one_minus_beta``) are not run-config keys."""
    return {k: v for k, v in config.items() if k in VALID_KEYS and VALID_KEYS[k] is None}


def search_label(config: dict[str, Any]) -> str:
    """Short label of a search trial (E/r) for folders and tables."""
    if "model.E" in config and "model.r" in config:
        return f"E{config['model.E']}_r{config['model.r']}"
    return "trial"


# ----------------------------------------------------------------------------------------------------------
# Validation (load_sweep): every problem collected, nothing raised


def check_search(
    search: SearchSpec, base: dict[str, Any], num_tasks: int, errors: list[str]
) -> SearchSpace | None:
    """The space's keys and ranges, ASHA's grace period against T, then the base at every range end and every
    point to evaluate as full RunConfigs. Returns the space, or None when the entries themselves are bad."""
    ok = True
    for key, d in search.space.items():
        where = f"search.space.{key}"
        problem = key_problem(key)
        if problem:
            errors.append(f"search.space: {problem}")
            ok = False
            continue
        if key.startswith("data.") or key == "seed":
            errors.append(
                f"{where}: data and seed are fixed per sweep (data is prepared on the driver); use a grid"
            )
            ok = False
        problems = d.problems(key, search.space)
        errors += [f"{where}: {problem}" for problem in problems]
        ok &= not problems
    sched = search.scheduler
    if len(search.objectives) == 1:
        errors.append("search.objectives: list two or more (one objective is search.metric)")
        ok = False
    if search.multi_objective and sched.type != "none":
        errors.append(
            "search.objectives: a multi-objective search needs search.scheduler.type: none (ASHA ranks trials "
            "on one metric at each rung; the objectives exist only in a finished trial's last report)"
        )
        ok = False
    if sched.type == "asha" and sched.grace_period >= num_tasks:
        errors.append(f"search.scheduler.grace_period={sched.grace_period} must be < T={num_tasks} tasks")
        ok = False
    if not ok:
        return None
    space = SearchSpace(search.space, build_config(base).model.E)
    _check_search_configs(space, search, base, errors)
    return space


def _check_search_configs(
    space: SearchSpace, search: SearchSpec, base: dict[str, Any], errors: list[str]
) -> None:
    """Validate the base at each end of every range and every point to evaluate as full RunConfigs."""
    base_cfg = build_config(base)
    for key, d in search.space.items():
        for where, over in d.corners(key, space):
            if key == "model.E":  # keep the base's r valid at every E
                E = int(over[key])
                over["model.r"] = (
                    min(base_cfg.model.r, E - 1) if "model.r" in space.space else base_cfg.model.r
                )
            build_or_collect(apply_overrides(base, over), where, errors)
    for i, point in enumerate(search.points_to_evaluate):
        where = f"search.points_to_evaluate[{i}]"
        unknown = [k for k in point if k not in space.space]
        if unknown:
            errors.append(f"{where}: {', '.join(unknown)} not in search.space ({', '.join(space.space)})")
            continue
        try:
            opt = space.to_optuna_point(point)
        except (TypeError, ValueError) as exc:
            errors.append(f"{where}: {exc}")
            continue
        for key, d in space.space.items():
            problem = d.point_problem(key, point[key], opt[d.optuna_name(key)]) if key in point else None
            if problem:
                errors.append(f"{where}: {problem}")
        build_or_collect(apply_overrides(base, point), where, errors)


# ----------------------------------------------------------------------------------------------------------
# ASHA arithmetic (Tune builds the scheduler in delo.sweep.searcher)


def asha_reduction_factor(num_tasks: int, given: float | None) -> float:
    return given if given is not None else (2 if num_tasks <= 5 else 3)


def asha_rungs(max_t: int, grace: int, rf: float) -> list[int]:
    """Tasks at which ASHA compares trials: grace * rf^k, k < floor(log(max_t / grace) / log(rf)) + 1 (as Ray's
    bracket counts them; a rung can fall on max_t itself, where it decides nothing)."""
    count = int(math.log(max_t / grace) / math.log(rf) + 1)
    return [int(grace * rf**k) for k in range(count)]


def asha_replay(
    arrivals: list[tuple[str, int, float]], max_t: int, grace: int, rf: float, mode: str = "max"
) -> dict[int, list[str]]:
    """The trials ASHA stops at each rung below ``max_t``, recomputed from ``arrivals``: (trial, task, metric)
    in the order the driver's scheduler saw the results (``asha_rungs.jsonl``, :class:`delo.sweep.progress.RungLog`).

    Ray's rule (one bracket, ``stop_last_trials``): a result at task t is compared at the highest rung r <= t the
    trial has not been recorded at yet; it stops the trial when it is below the (1 - 1/rf) quantile (linear
    interpolation) of the values recorded at r before it, and is then recorded there. A result at max_t ends the
    trial anyway. A trial seen again at a rung (a retry from an older checkpoint) is not decided twice."""
    import numpy as np

    rungs = sorted((r for r in asha_rungs(max_t, grace, rf) if r < max_t), reverse=True)
    recorded: dict[int, dict[str, float]] = {r: {} for r in rungs}
    stopped: dict[int, list[str]] = {r: [] for r in sorted(rungs)}
    sign = 1.0 if mode == "max" else -1.0
    for trial, task, value in arrivals:
        if task >= max_t or value is None:
            continue
        for rung in rungs:
            if task < rung or trial in recorded[rung]:
                continue
            before = list(recorded[rung].values())
            if before and sign * value < np.nanpercentile(before, (1 - 1 / rf) * 100):
                stopped[rung].append(trial)
            recorded[rung][trial] = sign * value
            break
    return stopped
