"""Search: the spec's distributions, the define-by-run space Optuna samples, r from r_frac, ASHA arithmetic (no Ray).

The Ray side (the PRUNED-aware Optuna searcher and the ASHA scheduler objects) is :mod:`delo.sweep.searcher`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from delo.config import VALID_KEYS, apply_overrides, build_config, build_or_collect, key_problem
from delo.metric_keys import AP_SEEN, OBJECTIVE_METRICS, SEARCH_METRICS

TUNE_METRIC = AP_SEEN
"""The metric Tune, ASHA and the searcher's per-report hook read: present in every report (final_ap is not)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntDist(_Strict):
    """Integers in [low, high], uniform or on a log scale."""

    type: Literal["int"]
    low: float
    high: float
    log: StrictBool = False


class FloatDist(_Strict):
    """Reals in [low, high], uniform or on a log scale."""

    type: Literal["float"]
    low: float
    high: float
    log: StrictBool = False


class ChoiceDist(_Strict):
    """One of ``values``."""

    type: Literal["choice"]
    values: list[Any]


class RFracDist(_Strict):
    """model.r from a fraction of model.E - 1 (:func:`r_from_frac`), so r < E always holds."""

    type: Literal["r_frac"]


class OneMinusDist(_Strict):
    """The key is 1 - x with x drawn in [low, high], e.g. beta from 1 - beta on a log scale."""

    type: Literal["one_minus"]
    low: float
    high: float
    log: StrictBool = False


Distribution = Annotated[
    IntDist | FloatDist | ChoiceDist | RFracDist | OneMinusDist, Field(discriminator="type")
]
RANGED = ("int", "float", "one_minus")


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


def optuna_name(key: str, dist: Distribution) -> str:
    """The Optuna parameter name of a space entry (the run-config key, or its helper for derived keys)."""
    parent, _, leaf = key.rpartition(".")
    prefix = f"{parent}." if parent else ""
    if dist.type == "r_frac":
        return f"{prefix}r_frac"
    if dist.type == "one_minus":
        return f"{prefix}one_minus_{leaf}"
    return key


class SearchSpace:
    """Define-by-run space for OptunaSearch: suggests every entry and returns the derived run-config keys.

    ``model.r`` (type r_frac) comes from a suggested fraction and the trial's E, so r < E always holds and the
    multivariate TPE keeps r (a dynamic ``suggest_int("r", 1, E - 1)`` would silently drop it). one_minus keys
    are returned as 1 - x. Suggested names are never returned (that would override the suggestion). Picklable
    (a plain class at module level), as Tune's restore needs.
    """

    def __init__(self, space: dict[str, Distribution], base_E: int):
        # E first, so r_frac can read it.
        self.space = dict(sorted(space.items(), key=lambda kv: kv[1].type == "r_frac"))
        self.base_E = base_E

    def __call__(self, trial) -> dict[str, Any]:
        derived: dict[str, Any] = {}
        values: dict[str, Any] = {}
        for key, d in self.space.items():
            name = optuna_name(key, d)
            if d.type == "int":
                values[key] = trial.suggest_int(name, int(d.low), int(d.high), log=d.log)
            elif d.type == "float":
                values[key] = trial.suggest_float(name, d.low, d.high, log=d.log)
            elif d.type == "choice":
                values[key] = trial.suggest_categorical(name, d.values)
            elif d.type == "one_minus":
                derived[key] = 1.0 - trial.suggest_float(name, d.low, d.high, log=d.log)
            elif d.type == "r_frac":
                E = int(values.get("model.E", self.base_E))
                derived[key] = r_from_frac(E, trial.suggest_float(name, 0.0, 1.0))
        return derived

    def to_optuna_point(self, point: dict[str, Any]) -> dict[str, Any]:
        """A run-config point (dotted keys) -> Optuna parameter names and values."""
        out: dict[str, Any] = {}
        for key, value in point.items():
            d = self.space[key]
            if d.type == "r_frac":
                out[optuna_name(key, d)] = frac_for_r(int(point.get("model.E", self.base_E)), int(value))
            elif d.type == "one_minus":
                out[optuna_name(key, d)] = 1.0 - float(value)
            else:
                out[key] = value
        return out

    def hparam_domains(self) -> dict[str, Any]:
        """name -> (low, high) or list, for the experiment-level TensorBoard hparams config."""
        out: dict[str, Any] = {}
        for key, d in self.space.items():
            if d.type == "int":
                out[key] = (int(d.low), int(d.high))
            elif d.type == "float":
                out[key] = (float(d.low), float(d.high))
            elif d.type == "choice":
                out[key] = list(d.values)
            elif d.type == "one_minus":
                out[key] = (1.0 - float(d.high), 1.0 - float(d.low))
            elif d.type == "r_frac":
                out[key] = (
                    1,
                    int(self.space["model.E"].high) - 1 if "model.E" in self.space else self.base_E - 1,
                )
        return out


def describe_dist(d: Distribution) -> str:
    if d.type == "choice":
        return f"choice {d.values}"
    if d.type == "r_frac":
        return "r = min(E-1, 1 + floor(r_frac * (E-1))), r_frac uniform [0, 1]"
    scale = "log " if d.log else ""
    if d.type == "one_minus":
        return f"1 - x, x {scale}[{d.low:g}, {d.high:g}]"
    return f"{d.type} {scale}[{d.low:g}, {d.high:g}]"


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
        ok &= _check_dist(key, d, search.space, where, errors)
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


def _check_dist(
    key: str, d: Distribution, space: dict[str, Distribution], where: str, errors: list[str]
) -> bool:
    n0 = len(errors)
    if d.type in RANGED:
        if not d.low < d.high:
            errors.append(f"{where}: empty range low={d.low:g} >= high={d.high:g}")
        if d.log and d.low <= 0:
            errors.append(f"{where}: a log scale needs low > 0 (got {d.low:g})")
        if d.type == "int" and (d.low != int(d.low) or d.high != int(d.high)):
            errors.append(f"{where}: int bounds must be whole numbers")
        if d.type == "one_minus" and not (d.low > 0 and d.high <= 1):
            errors.append(f"{where}: one_minus draws x in (0, 1]; got [{d.low:g}, {d.high:g}]")
    elif d.type == "choice":
        if not d.values:
            errors.append(f"{where}: choice needs a non-empty 'values' list")
        elif not all(v is None or isinstance(v, (bool, int, float, str)) for v in d.values):
            errors.append(f"{where}: choice values must be plain numbers, strings, booleans or null")
    elif d.type == "r_frac":
        if key != "model.r":
            errors.append(f"{where}: type r_frac derives model.r only")
        e = space.get("model.E")
        if e is not None and e.type != "int":
            errors.append(f"{where}: r_frac needs model.E of type int (got {e.type})")
    return len(errors) == n0


def _check_search_configs(
    space: SearchSpace, search: SearchSpec, base: dict[str, Any], errors: list[str]
) -> None:
    """Validate the base at each end of every range and every point to evaluate as full RunConfigs."""
    base_cfg = build_config(base)
    for key, d in search.space.items():
        if d.type == "r_frac":
            E_space = space.space.get("model.E")
            E_values = [int(E_space.low), int(E_space.high)] if E_space is not None else [base_cfg.model.E]
            for E in E_values:
                for f in (0.0, 1.0):
                    over = {"model.r": r_from_frac(E, f)}
                    if E_space is not None:
                        over["model.E"] = E
                    build_or_collect(
                        apply_overrides(base, over), f"search.space.{key} at E={E}, r_frac={f:g}", errors
                    )
            continue
        ends = list(d.values) if d.type == "choice" else [d.low, d.high]
        for value in ends:
            value = 1.0 - value if d.type == "one_minus" else (int(value) if d.type == "int" else value)
            over = {key: value}
            if key == "model.E":
                over["model.r"] = (
                    min(base_cfg.model.r, int(value) - 1) if "model.r" in space.space else base_cfg.model.r
                )
            build_or_collect(apply_overrides(base, over), f"search.space.{key}={value}", errors)
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
            name = optuna_name(key, d)
            if name in opt and d.type in RANGED and not d.low <= float(opt[name]) <= d.high:
                errors.append(f"{where}: {key}={point[key]} lies outside the space [{d.low:g}, {d.high:g}]")
            if name in opt and d.type == "choice" and opt[name] not in d.values:
                errors.append(f"{where}: {key}={point[key]!r} is not one of {d.values}")
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
