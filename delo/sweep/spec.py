"""Sweep specs: the schema and :func:`load_sweep`, which reads, overrides and validates one (no Ray).

A spec is a YAML file::

    name: rank_factor                    # experiment folder name under the storage path
    table: rank_factor                   # report layout (paper Table 5); see delo.sweep.layouts.TABLES
    base:
      file: profiles/synthetic.yaml      # a run-config file, relative to the spec (extends: allowed)
      config: {train: {epochs: 2}}       # inline run-config overrides (nested or dotted keys)
    grid:                                # either grid ...
      variants: {delo: {}, no_guide: {model.variant: no_guide}}   # named dicts of dotted overrides
      axes:
        data.missing.eta: [0.1, 0.5]     # one run-config key -> values
        E_r: [{model.E: 16, model.r: 2}, {model.E: 32, model.r: 8}]   # a joint axis of valid pairs
      seeds: [0, 1, 2]
    search:                              # ... or search
      space: {model.E: {type: int, low: 4, high: 32, log: true}, model.r: {type: r_frac}, ...}
      num_samples: 24
      searcher: {type: optuna_tpe, seed: 0}
      scheduler: {type: asha, grace_period: 2}
      metric: ap_seen                    # val only; test_* objectives are refused
    resources: {cpu: 1, gpu: 0}          # per trial; fractional GPUs allowed
    max_concurrent: 2
    storage: null                        # default ./sweep_results under the current directory
    failure: {max_failures: 2}

:func:`load_sweep` checks every dotted key against the run-config schema, builds and validates every grid
trial's :class:`~delo.config.RunConfig` (and, for a search, the base, the corners of the space and the points to
evaluate) and raises one :class:`~delo.config.ConfigError` listing every problem, before anything starts.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from delo.config import (
    VALID_KEYS,
    ConfigError,
    RunConfig,
    build_or_collect,
    check_key,
    fields_at,
    format_validation_error,
    key_problem,
    read_with_extends,
    read_yaml_mapping,
    set_dotted,
    split_assignment,
)
from delo.data.sessions import num_sessions
from delo.sweep.grid import NAME, GridSpec, TrialSpec, expand_grid
from delo.sweep.layouts import DELO, GENERIC, TABLES
from delo.sweep.search import (
    SearchSpace,
    SearchSpec,
    asha_reduction_factor,
    asha_rungs,
    check_search,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseSpec(_Strict):
    file: str | None = None
    """Run-config YAML, relative to the spec file (its ``extends:`` chain is followed)."""
    config: dict[str, Any] = {}
    """Inline run-config overrides: nested sections and/or dotted keys, applied over ``file``."""


class Resources(_Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _gpu_share(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"gpu={value}: use a fraction of one GPU (<= 1) or a whole number")
        return value


class FailureSpec(_Strict):
    max_failures: int = Field(2, ge=0)
    """Retries per trial, each resuming from its last task checkpoint."""


class SweepSpec(_Strict):
    name: str
    description: str = ""
    table: Literal[TABLES] = GENERIC.name
    base: BaseSpec = BaseSpec()
    grid: GridSpec | None = None
    search: SearchSpec | None = None
    resources: Resources = Resources()
    max_concurrent: int = Field(2, ge=1)
    storage: str | None = None
    failure: FailureSpec = FailureSpec()

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"{value!r}: use letters, digits, '_', '-', '.' (it names a folder)")
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> SweepSpec:
        if (self.grid is None) == (self.search is None):
            raise ValueError("a spec needs exactly one of 'grid' or 'search'")
        return self


# ----------------------------------------------------------------------------------------------------------
# Resolved sweep


@dataclass
class Sweep:
    spec: SweepSpec
    spec_path: Path
    base: dict[str, Any]
    """Run-config data (file + inline + --set), before any trial's overrides."""
    base_config: RunConfig
    storage: Path
    num_tasks: int
    trials: list[TrialSpec] = field(default_factory=list)
    """Grid: every trial, validated, in Tune's order. Search: empty (the searcher makes them)."""
    space: SearchSpace | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def experiment_dir(self) -> Path:
        return self.storage / self.spec.name

    @property
    def total_trials(self) -> int:
        return len(self.trials) if self.spec.grid is not None else self.spec.search.num_samples

    def canonical(self) -> dict[str, Any]:
        """What must not change between a sweep and its --resume: the spec and the resolved base run config
        (storage excluded: it names the folder; the base file's path too: its content is in ``base``)."""
        spec = self.spec.model_dump(mode="json", exclude={"storage": True, "base": {"file"}})
        return {"spec": spec, "base": self.base}

    def canonical_yaml(self) -> str:
        return yaml.safe_dump(self.canonical(), sort_keys=True)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True).encode()).hexdigest()

    def describe(self) -> str:
        """Human-readable dry-run text: the grid's trials or the search space."""
        c = self.base_config
        # E and r are DeLo's keys; a comparator's own keys are in its trial lines / search space
        method = f"E={c.model.E} r={c.model.r}" if c.model.method == DELO else f"method={c.model.method}"
        head = [
            f"sweep {self.name!r} ({self.spec_path}) -> {self.experiment_dir}",
            (
                f"base: backbone={c.model.backbone} data={c.data.name} eta={c.data.missing.eta:g}/"
                f"{c.data.missing.type} {method} epochs={c.train.epochs} lr={c.train.lr:g} "
                f"test rows={c.eval.test}"
            ),
            f"tasks per trial: {self.num_tasks}",
        ]
        res = self.spec.resources
        head.append(
            f"resources per trial: cpu={res.cpu:g} gpu={res.gpu:g}; max concurrent {self.spec.max_concurrent}"
        )
        if self.spec.grid is not None:
            head.append(f"grid: {len(self.trials)} trials")
            for t in self.trials:
                sets = ", ".join(f"{k}={v}" for k, v in t.overrides.items() if k != "seed")
                head.append(f"  {t.label:<28} seed={t.seed:<3} {sets}")
            return "\n".join(head)
        s = self.spec.search
        goal = (
            "objectives "
            + ", ".join(f"{o.metric} ({o.mode})" for o in s.objectives)
            + " (val; a Pareto front)"
            if s.multi_objective
            else f"objective val {s.metric} (max)"
        )
        head.append(
            f"search: {s.num_samples} samples, {s.searcher.type} (seed {s.searcher.seed}), scheduler "
            f"{s.scheduler.type}, {goal}"
        )
        if s.scheduler.type == "asha":
            rf = asha_reduction_factor(self.num_tasks, s.scheduler.reduction_factor)
            head.append(
                f"  ASHA on task: grace {s.scheduler.grace_period}, rf {rf:g}, "
                f"rungs {asha_rungs(self.num_tasks, s.scheduler.grace_period, rf)}"
            )
        for key, dist in s.space.items():
            head.append(f"  {key:<20} {dist.describe()}")
        for point in s.points_to_evaluate:
            head.append(f"  first: {point}")
        return "\n".join(head)


# ----------------------------------------------------------------------------------------------------------
# Loading


def load_sweep(
    path: str | Path,
    sets: list[str] | tuple[str, ...] = (),
    profile: str | None = None,
    storage: str | Path | None = None,
    cwd: Path | None = None,
) -> Sweep:
    """Read, override and validate a spec; expand the grid. One ConfigError lists every problem."""
    path = Path(path).resolve()
    raw = _read_spec(path)
    spec_sets, run_sets = _split_sets(sets)
    for key, value in spec_sets:
        raw = _set_spec(raw, key, value)
    if profile:
        raw = _set_spec(raw, "base.file", str(_profile_path(profile, path)))
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_spec_errors(err, path)) from None

    errors: list[str] = []
    base = _resolve_base(spec, path, run_sets, errors)
    base_config = build_or_collect(base, "base config", errors)
    if base_config is None:
        raise ConfigError(_join(path, errors))
    num_tasks = tasks_of(base_config)
    if "://" in str(storage or spec.storage or ""):
        raise ConfigError(
            f"{path}: storage {storage or spec.storage!r}: use a filesystem path that every node shares (local "
            "disk for one machine, NFS or another shared mount for a cluster); trials write their run folders there"
        )
    root = Path(storage or spec.storage or "sweep_results")
    root = (cwd or Path.cwd()) / root if not root.is_absolute() else root
    sweep = Sweep(spec, path, base, base_config, root.resolve(), num_tasks)

    if spec.grid is not None:
        sweep.trials = expand_grid(spec.grid, base, {k for k, _ in run_sets}, errors)
    else:
        sweep.space = check_search(spec.search, base, num_tasks, errors)
    if errors:
        raise ConfigError(_join(path, errors))
    return sweep


def tasks_of(cfg: RunConfig) -> int:
    """T of a run: data.num_tasks, else the dataset's session count (protocol.md §1)."""
    full = num_sessions(cfg.data.name, cfg.data.synthetic.kind)
    return min(cfg.data.num_tasks, full) if cfg.data.num_tasks else full


def _read_spec(path: Path) -> dict[str, Any]:
    shape = "a sweep spec is a mapping (name, base, grid|search, ...)"
    return read_yaml_mapping(path, "sweep spec", shape, empty_ok=False)


def _profile_path(profile: str, spec_path: Path) -> Path:
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate.resolve()
    named = spec_path.parent / "profiles" / f"{profile}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in (spec_path.parent / "profiles").glob("*.yaml"))
    raise ConfigError(f"--profile {profile}: no such file and no {named}; known profiles: {', '.join(known)}")


def _split_sets(sets) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """--set items -> (spec-level, run-config) pairs; a run-config key is checked against the schema."""
    spec_fields = set(SweepSpec.model_fields)
    spec_sets, run_sets = [], []
    for item in sets:
        key, value = split_assignment(item, "--set", "key=value")
        if key.split(".", 1)[0] in spec_fields:
            spec_sets.append((key, value))
        else:
            try:
                check_key(key)
            except ConfigError as exc:
                raise ConfigError(f"--set {exc} (neither a run-config key nor a spec field)") from None
            run_sets.append((key, value))
    return spec_sets, run_sets


def _set_spec(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Set a spec key; a remaining dotted string that is itself a key (a grid axis like model.E) wins."""
    out = dict(data)
    if dotted in out or "." not in dotted:
        out[dotted] = value
        return out
    head, rest = dotted.split(".", 1)
    child = out.get(head)
    out[head] = _set_spec(child if isinstance(child, dict) else {}, rest, value)
    return out


def _resolve_base(spec: SweepSpec, path: Path, run_sets, errors: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if spec.base.file:
        file = (path.parent / spec.base.file).resolve()
        try:
            data = read_with_extends(file)
        except ConfigError as exc:
            errors.append(f"base.file: {exc}")
    inline = _dotted_leaves(spec.base.config, "base.config", errors)
    for key, value in inline.items():
        data = set_dotted(data, key, value)
    for key, value in run_sets:
        data = set_dotted(data, key, value)
    return data


def _dotted_leaves(data: dict[str, Any], where: str, errors: list[str], prefix: str = "") -> dict[str, Any]:
    """Nested and/or dotted run-config overrides -> {dotted leaf key: value}, every key schema-checked."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted not in VALID_KEYS:
            errors.append(f"{where}: {key_problem(dotted)}")
            continue
        if isinstance(value, dict) and VALID_KEYS[dotted] is not None:
            out.update(_dotted_leaves(value, where, errors, dotted + "."))
        else:
            out[dotted] = value
    return out


def _join(path: Path, errors: list[str]) -> str:
    return f"invalid sweep spec {path}:\n  " + "\n  ".join(e.replace("\n", "\n  ") for e in errors)


def _format_spec_errors(err: ValidationError, path: Path) -> str:
    def unknown(loc: tuple, dotted: str) -> str:
        options = fields_at(SweepSpec, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), options, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(options)})"
        return f"{dotted}: unknown spec field{hint}"

    return format_validation_error(err, f"invalid sweep spec {path}", unknown, name_cross_field=True)
