"""Sweep specs: schema, strict validation, grid expansion and the define-by-run search space (no Ray here).

A spec is a YAML file::

    name: rank_factor                    # experiment folder name under the storage path
    table: rank_factor                   # report layout (paper Table 5); see TABLES
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

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from delo.config import (
    VALID_KEYS,
    ConfigError,
    RunConfig,
    build_config,
    check_key,
    read_with_extends,
    set_dotted,
)

TABLES = ("rank_factor", "components", "losses", "missing", "search", "generic")
SEARCH_METRICS = ("ap_seen", "final_ap")
"""Allowed objectives: val AP over seen tasks after each task, or the final val AP (ap_seen after task T)."""
TUNE_METRIC = "ap_seen"
"""The metric Tune, ASHA and the searcher's per-report hook read: present in every report (final_ap is not)."""
DEFAULT_TASKS = {("synthetic", "mc"): 5, ("synthetic", "ml"): 4, "food101": 10, "mmimdb": 5}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseSpec(_Strict):
    file: str | None = None
    """Run-config YAML, relative to the spec file (its ``extends:`` chain is followed)."""
    config: dict[str, Any] = {}
    """Inline run-config overrides: nested sections and/or dotted keys, applied over ``file``."""


class GridSpec(_Strict):
    variants: dict[str, dict[str, Any]] = {}
    """Named variants, each a dict of dotted run-config overrides ({} = the base as is)."""
    axes: dict[str, list[Any]] = {}
    """A dotted key -> list of values, or a free name -> list of dicts of dotted overrides (joint axis)."""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    """Training seeds (top-level ``seed`` of the run config); every point runs once per seed."""


class Distribution(_Strict):
    type: Literal["int", "float", "choice", "r_frac", "one_minus"]
    """int / float (uniform or log), choice (values), r_frac (model.r from a fraction of model.E - 1),
    one_minus (the key is 1 - x with x drawn in [low, high], e.g. beta from 1 - beta on a log scale)."""
    low: float | None = None
    high: float | None = None
    log: StrictBool = False
    values: list[Any] | None = None


class SearcherSpec(_Strict):
    type: Literal["optuna_tpe"] = "optuna_tpe"
    seed: int = 0


class SchedulerSpec(_Strict):
    type: Literal["asha", "none"] = "asha"
    grace_period: int = Field(2, ge=1)
    """First rung, in tasks (>= 2: forgetting shows only from the second task)."""
    reduction_factor: float | None = Field(None, gt=1)
    """None: 2 when T <= 5, else 3."""


class SearchSpec(_Strict):
    space: dict[str, Distribution] = Field(min_length=1)
    points_to_evaluate: list[dict[str, Any]] = []
    """Run-config values (dotted keys) tried first, e.g. the paper point."""
    num_samples: int = Field(ge=1)
    searcher: SearcherSpec = SearcherSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    metric: str = "ap_seen"
    mode: Literal["max"] = "max"

    @field_validator("metric")
    @classmethod
    def _val_only(cls, value: str) -> str:
        if value.startswith("test"):
            raise ValueError(f"{value!r} is a test-split metric; search reads val only ({', '.join(SEARCH_METRICS)})")
        if value not in SEARCH_METRICS:
            raise ValueError(f"{value!r} is not a searchable metric; use one of {', '.join(SEARCH_METRICS)}")
        return value


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
    table: Literal["rank_factor", "components", "losses", "missing", "search", "generic"] = "generic"
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
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: use letters, digits, '_', '-', '.' (it names a folder)")
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> SweepSpec:
        if (self.grid is None) == (self.search is None):
            raise ValueError("a spec needs exactly one of 'grid' or 'search'")
        return self


# ----------------------------------------------------------------------------------------------------------
# Resolved sweep


@dataclass(frozen=True)
class GridTrial:
    """One expanded grid trial: its label (variant + axis points), seed and dotted overrides over the base."""

    label: str
    variant: str
    seed: int
    overrides: dict[str, Any]


@dataclass
class Sweep:
    spec: SweepSpec
    spec_path: Path
    base: dict[str, Any]
    """Run-config data (file + inline + --set), before any trial's overrides."""
    base_config: RunConfig
    storage: Path
    num_tasks: int
    trials: list[GridTrial] = field(default_factory=list)
    space: SearchSpace | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def experiment_dir(self) -> Path:
        return self.storage / self.spec.name

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
        head = [
            f"sweep {self.name!r} ({self.spec_path}) -> {self.experiment_dir}",
            (f"base: backbone={c.model.backbone} data={c.data.name} eta={c.data.missing.eta:g}/{c.data.missing.type} "
            f"E={c.model.E} r={c.model.r} epochs={c.train.epochs} lr={c.train.lr:g} test rows={c.eval.test}"),
            f"tasks per trial: {self.num_tasks}",
        ]
        res = self.spec.resources
        head.append(f"resources per trial: cpu={res.cpu:g} gpu={res.gpu:g}; max concurrent {self.spec.max_concurrent}")
        if self.spec.grid is not None:
            head.append(f"grid: {len(self.trials)} trials")
            for t in self.trials:
                sets = ", ".join(f"{k}={v}" for k, v in t.overrides.items() if k != "seed")
                head.append(f"  {t.label:<28} seed={t.seed:<3} {sets}")
            return "\n".join(head)
        s = self.spec.search
        head.append(
            f"search: {s.num_samples} samples, {s.searcher.type} (seed {s.searcher.seed}), scheduler {s.scheduler.type}"
            f", objective val {s.metric} (max)"
        )
        if s.scheduler.type == "asha":
            rf = asha_reduction_factor(self.num_tasks, s.scheduler.reduction_factor)
            head.append(f"  ASHA on task: grace {s.scheduler.grace_period}, rf {rf:g}, "
                        f"rungs {asha_rungs(self.num_tasks, s.scheduler.grace_period, rf)}")
        for key, dist in s.space.items():
            head.append(f"  {key:<20} {_describe_dist(key, dist)}")
        for point in s.points_to_evaluate:
            head.append(f"  first: {point}")
        return "\n".join(head)


def _describe_dist(key: str, d: Distribution) -> str:
    if d.type == "choice":
        return f"choice {d.values}"
    if d.type == "r_frac":
        return "r = min(E-1, 1 + floor(r_frac * (E-1))), r_frac uniform [0, 1]"
    scale = "log " if d.log else ""
    if d.type == "one_minus":
        return f"1 - x, x {scale}[{d.low:g}, {d.high:g}]"
    return f"{d.type} {scale}[{d.low:g}, {d.high:g}]"


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
    base_config = _validated(base, "base config", errors)
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
        sweep.trials = _expand_grid(spec.grid, base, {k for k, _ in run_sets}, errors)
    else:
        sweep.space = _check_search(spec.search, base, num_tasks, errors)
    if errors:
        raise ConfigError(_join(path, errors))
    return sweep


def _read_spec(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: sweep spec not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep spec is a mapping (name, base, grid|search, ...), got {type(data).__name__}")
    return data


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
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
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
            errors.append(f"{where}: {_key_problem(dotted)}")
            continue
        if isinstance(value, dict) and VALID_KEYS[dotted] is not None:
            out.update(_dotted_leaves(value, where, errors, dotted + "."))
        else:
            out[dotted] = value
    return out


def _key_problem(dotted: str) -> str:
    try:
        check_key(dotted)
    except ConfigError as exc:
        return str(exc)
    return ""


def _validated(data: dict[str, Any], what: str, errors: list[str]) -> RunConfig | None:
    try:
        return build_config(data, what)
    except ConfigError as exc:
        errors.append(str(exc))
        return None


def tasks_of(cfg: RunConfig) -> int:
    """T of a run: data.num_tasks, else the dataset's session count (protocol.md §1)."""
    full = DEFAULT_TASKS.get(cfg.data.name) or DEFAULT_TASKS[(cfg.data.name, cfg.data.synthetic.kind)]
    return min(cfg.data.num_tasks, full) if cfg.data.num_tasks else full


def _join(path: Path, errors: list[str]) -> str:
    return f"invalid sweep spec {path}:\n  " + "\n  ".join(e.replace("\n", "\n  ") for e in errors)


def _format_spec_errors(err: ValidationError, path: Path) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        if e["type"] == "extra_forbidden":
            parent, _, leaf = loc.rpartition(".")
            options = _spec_fields_at(parent)
            close = difflib.get_close_matches(leaf, options, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(options)})"
            lines.append(f"{loc}: unknown spec field{hint}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '(top level)'}: {msg}" + ("" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"))
    return f"invalid sweep spec {path}:\n  " + "\n  ".join(lines)


def _spec_fields_at(dotted: str) -> list[str]:
    model: type[BaseModel] = SweepSpec
    for part in [p for p in dotted.split(".") if p]:
        ann = model.model_fields.get(part)
        if ann is None:
            return []
        sub = next(
            (c for c in (ann.annotation, *getattr(ann.annotation, "__args__", ())) if isinstance(c, type) and issubclass(c, BaseModel)),
            None,
        )
        if sub is None:
            return list(Distribution.model_fields) if part == "space" else []
        model = sub
    return list(model.model_fields)


# ----------------------------------------------------------------------------------------------------------
# Grid


@dataclass(frozen=True)
class GridPoint:
    """One value of a variant list or axis: a short name and its dotted overrides."""

    name: str
    overrides: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "set": dict(self.overrides)}


def grid_points(grid: GridSpec, errors: list[str] | None = None) -> tuple[list[GridPoint], dict[str, list[GridPoint]]]:
    """The variant points (one nameless point when there are none) and each axis's points, keys checked."""
    errors = [] if errors is None else errors
    variants = []
    for name, overrides in grid.variants.items():
        if not _NAME.match(name):
            errors.append(f"grid.variants.{name}: use letters, digits, '_', '-', '.' (it names trial folders)")
        if not isinstance(overrides, dict):
            errors.append(f"grid.variants.{name}: must be a mapping of dotted run-config keys, got {overrides!r}")
            continue
        variants.append(GridPoint(name, _checked(overrides, f"grid.variants.{name}", errors)))
    if not variants:
        variants = [GridPoint("", {})]
    axes: dict[str, list[GridPoint]] = {}
    for axis, values in grid.axes.items():
        if not values:
            errors.append(f"grid.axes.{axis}: empty list of values")
            continue
        joint = [isinstance(v, dict) for v in values]
        if all(joint):
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", axis) or axis in ("variant", "seed"):
                errors.append(f"grid.axes.{axis}: a joint axis needs a plain name (not 'variant'/'seed', no dots)")
            axes[axis] = [
                GridPoint(",".join(f"{_short(k)}={v}" for k, v in point.items()), _checked(point, f"grid.axes.{axis}[{i}]", errors))
                for i, point in enumerate(values)
            ]
        elif any(joint):
            errors.append(f"grid.axes.{axis}: mixes mappings and plain values")
        else:
            problem = _key_problem(axis)
            if problem:
                errors.append(f"grid.axes: {problem} (an axis of plain values must name a run-config key)")
                continue
            axes[axis] = [GridPoint(f"{_short(axis)}={v}", {axis: v}) for v in values]
    return variants, axes


def _checked(overrides: dict[str, Any], where: str, errors: list[str]) -> dict[str, Any]:
    for key in overrides:
        problem = _key_problem(key)
        if problem:
            errors.append(f"{where}: {problem}")
    return dict(overrides)


def _short(dotted: str) -> str:
    return dotted.rsplit(".", 1)[-1]


def _expand_grid(grid: GridSpec, base: dict[str, Any], set_keys: set[str], errors: list[str]) -> list[GridTrial]:
    variants, axes = grid_points(grid, errors)
    if errors:
        return []
    if len(set(grid.seeds)) != len(grid.seeds):
        errors.append(f"grid.seeds: duplicates in {grid.seeds}")
    trials: list[GridTrial] = []
    for variant in variants:
        for combo in _product([axes[a] for a in axes]):
            for seed in grid.seeds:
                sources = [(f"grid.variants.{variant.name}", variant.overrides)]
                sources += [(f"grid.axes.{a}", p.overrides) for a, p in zip(axes, combo)]
                overrides = _merge_sources(sources, set_keys, errors)
                overrides["seed"] = seed
                trial = GridTrial(_label(variant, combo), variant.name or "base", seed, overrides)
                cfg = _validated(_apply(base, overrides), f"trial {trial.label} seed {seed}", errors)
                if cfg is not None:
                    trials.append(trial)
    labels = [(t.label, t.seed) for t in trials]
    if len(set(labels)) != len(labels):
        errors.append("grid: two trials share a label and seed (give variants distinct names)")
    return trials


def _product(lists: list[list[GridPoint]]) -> list[tuple[GridPoint, ...]]:
    out: list[tuple[GridPoint, ...]] = [()]
    for points in lists:
        out = [(*prefix, p) for prefix in out for p in points]
    return out


def _merge_sources(sources, set_keys: set[str], errors: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for where, overrides in sources:
        for key, value in overrides.items():
            if key in owner and owner[key] != where:
                errors.append(f"{where}: sets {key}, which {owner[key]} also sets")
            if key in set_keys:
                errors.append(f"--set {key}: {where} sets it for every trial, so the override would be ignored")
            owner[key] = where
            merged[key] = value
    return merged


def _label(variant: GridPoint, combo: tuple[GridPoint, ...]) -> str:
    parts = [variant.name] if variant.name else []
    parts += [p.name for p in combo]
    return "_".join(parts) or "base"


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in overrides.items():
        data = set_dotted(data, key, value)
    return data


def grid_param_space(sweep: Sweep) -> dict[str, Any]:
    """Plain description of the grid for the Tuner: variant and axis points (as dicts) and seeds.

    ``delo.tune`` wraps each list in ``tune.grid_search``; the order matches :attr:`Sweep.trials`
    (variants, then axes in spec order, then seeds; the last key varies fastest in Tune's expansion).
    """
    variants, axes = grid_points(sweep.spec.grid)
    return {
        "variant": [v.as_dict() for v in variants],
        "axes": {name: [p.as_dict() for p in points] for name, points in axes.items()},
        "seed": list(sweep.spec.grid.seeds),
    }


# ----------------------------------------------------------------------------------------------------------
# What a trial runs: from its Tune config to its RunConfig (used by the trainable, tested without Ray)


def trial_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's Tune config -> dotted run-config overrides (grid: variant + axes + seed; search: its keys)."""
    out: dict[str, Any] = {}
    if "variant" in config:
        out.update(config["variant"]["set"])
        for point in (config.get("axes") or {}).values():
            out.update(point["set"])
    out.update({k: v for k, v in config.items() if k in VALID_KEYS and VALID_KEYS[k] is None})
    return out


def trial_label(config: dict[str, Any]) -> str:
    """Short label of a trial (variant and axis point names; E/r for a search) for folders and tables."""
    if "variant" in config:
        parts = [config["variant"]["name"]] if config["variant"]["name"] else []
        parts += [p["name"] for p in (config.get("axes") or {}).values()]
        return "_".join(parts) or "base"
    if "model.E" in config and "model.r" in config:
        return f"E{config['model.E']}_r{config['model.r']}"
    return "trial"


def trial_dirname(config: dict[str, Any], trial_id: str) -> str:
    """``<label>_s<seed>_<id>`` with only filesystem-safe characters, short enough for any path."""
    label = re.sub(r"[^A-Za-z0-9.\-]+", "", trial_label(config).replace("_", "-").replace(",", "-"))
    label = label.replace("=", "")[:48] or "trial"
    return f"{label}_s{config.get('seed', 0)}_{trial_id}"


def trial_run_config(base: dict[str, Any], config: dict[str, Any]) -> RunConfig:
    """The typed RunConfig a trial runs: base <- its overrides (validated, every problem at once)."""
    return build_config(_apply(base, trial_overrides(config)), f"trial {trial_label(config)}")


# ----------------------------------------------------------------------------------------------------------
# Search


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
                out[key] = (1, int(self.space["model.E"].high) - 1 if "model.E" in self.space else self.base_E - 1)
        return out


def _check_search(search: SearchSpec, base: dict[str, Any], num_tasks: int, errors: list[str]) -> SearchSpace | None:
    ok = True
    for key, d in search.space.items():
        where = f"search.space.{key}"
        problem = _key_problem(key)
        if problem:
            errors.append(f"search.space: {problem}")
            ok = False
            continue
        if key.startswith("data.") or key == "seed":
            errors.append(f"{where}: data and seed are fixed per sweep (data is prepared on the driver); use a grid")
            ok = False
        ok &= _check_dist(key, d, search.space, where, errors)
    sched = search.scheduler
    if sched.type == "asha" and sched.grace_period >= num_tasks:
        errors.append(f"search.scheduler.grace_period={sched.grace_period} must be < T={num_tasks} tasks")
        ok = False
    if not ok:
        return None
    base_cfg = build_config(base)
    space = SearchSpace(search.space, base_cfg.model.E)
    _check_search_configs(space, search, base, errors)
    return space


def _check_dist(key: str, d: Distribution, space: dict[str, Distribution], where: str, errors: list[str]) -> bool:
    n0 = len(errors)
    if d.type in ("int", "float", "one_minus"):
        if d.low is None or d.high is None:
            errors.append(f"{where}: type {d.type} needs low and high")
            return False
        if d.values is not None:
            errors.append(f"{where}: 'values' belongs to type choice")
        if not d.low < d.high:
            errors.append(f"{where}: empty range low={d.low:g} >= high={d.high:g}")
        if d.log and d.low <= 0:
            errors.append(f"{where}: a log scale needs low > 0 (got {d.low:g})")
        if d.type == "int" and (d.low != int(d.low) or d.high != int(d.high)):
            errors.append(f"{where}: int bounds must be whole numbers")
        if d.type == "one_minus" and not (0 < d.low and d.high <= 1):
            errors.append(f"{where}: one_minus draws x in (0, 1]; got [{d.low:g}, {d.high:g}]")
    elif d.type == "choice":
        if not d.values:
            errors.append(f"{where}: choice needs a non-empty 'values' list")
        elif not all(v is None or isinstance(v, (bool, int, float, str)) for v in d.values):
            errors.append(f"{where}: choice values must be plain numbers, strings, booleans or null")
        if d.low is not None or d.high is not None or d.log:
            errors.append(f"{where}: choice takes only 'values'")
    elif d.type == "r_frac":
        if key != "model.r":
            errors.append(f"{where}: type r_frac derives model.r only")
        if d.low is not None or d.high is not None or d.values is not None or d.log:
            errors.append(f"{where}: r_frac takes no bounds (r_frac is uniform on [0, 1])")
        e = space.get("model.E")
        if e is not None and e.type != "int":
            errors.append(f"{where}: r_frac needs model.E of type int (got {e.type})")
    return len(errors) == n0


def _check_search_configs(space: SearchSpace, search: SearchSpec, base: dict[str, Any], errors: list[str]) -> None:
    """Validate the base at each end of every range and every point to evaluate as full RunConfigs."""
    base_cfg = build_config(base)
    for key, d in search.space.items():
        if d.type == "r_frac":
            E_values = [int(space.space["model.E"].low), int(space.space["model.E"].high)] if "model.E" in space.space else [base_cfg.model.E]
            for E in E_values:
                for f in (0.0, 1.0):
                    over = {"model.r": r_from_frac(E, f)}
                    if "model.E" in space.space:
                        over["model.E"] = E
                    _validated(_apply(base, over), f"search.space.{key} at E={E}, r_frac={f:g}", errors)
            continue
        ends = list(d.values) if d.type == "choice" else [d.low, d.high]
        for value in ends:
            value = 1.0 - value if d.type == "one_minus" else (int(value) if d.type == "int" else value)
            over = {key: value}
            if key == "model.E":
                over["model.r"] = min(base_cfg.model.r, int(value) - 1) if "model.r" in space.space else base_cfg.model.r
            _validated(_apply(base, over), f"search.space.{key}={value}", errors)
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
            if name in opt and d.type in ("int", "float", "one_minus") and not d.low <= float(opt[name]) <= d.high:
                errors.append(f"{where}: {key}={point[key]} lies outside the space [{d.low:g}, {d.high:g}]")
            if name in opt and d.type == "choice" and opt[name] not in d.values:
                errors.append(f"{where}: {key}={point[key]!r} is not one of {d.values}")
        _validated(_apply(base, point), where, errors)


# ----------------------------------------------------------------------------------------------------------
# ASHA helpers (pure arithmetic; Tune builds the scheduler)


def asha_reduction_factor(num_tasks: int, given: float | None) -> float:
    return given if given is not None else (2 if num_tasks <= 5 else 3)


def asha_rungs(max_t: int, grace: int, rf: float) -> list[int]:
    """Tasks at which ASHA compares trials: grace * rf^k, k < floor(log(max_t / grace) / log(rf)) + 1 (as Ray's
    bracket counts them; a rung can fall on max_t itself, where it decides nothing)."""
    count = int(math.log(max_t / grace) / math.log(rf) + 1)
    return [int(grace * rf**k) for k in range(count)]


# ----------------------------------------------------------------------------------------------------------
# Resume bookkeeping


SPEC_FILE = "sweep_spec.yaml"
HASH_FILE = "sweep_spec.sha256"


def save_spec(sweep: Sweep) -> None:
    """Write the resolved spec and its hash into the experiment folder (first start only)."""
    exp = sweep.experiment_dir
    exp.mkdir(parents=True, exist_ok=True)
    (exp / SPEC_FILE).write_text(sweep.canonical_yaml())
    (exp / HASH_FILE).write_text(sweep.hash() + "\n")


def check_resumable(sweep: Sweep) -> None:
    """--resume: the saved spec and hash must exist and equal this one's; else ConfigError with the diff."""
    exp = sweep.experiment_dir
    spec_file, hash_file = exp / SPEC_FILE, exp / HASH_FILE
    if not spec_file.is_file() or not hash_file.is_file():
        raise ConfigError(
            f"--resume: {exp} holds no saved spec ({SPEC_FILE} and {HASH_FILE}); nothing to resume there. "
            "Start without --resume (or check --storage and the spec name)."
        )
    if hash_file.read_text().strip() != sweep.hash():
        diff = difflib.unified_diff(
            spec_file.read_text().splitlines(), sweep.canonical_yaml().splitlines(),
            fromfile=f"saved {spec_file}", tofile=f"now {sweep.spec_path}", lineterm="",
        )
        raise ConfigError(
            f"--resume refused: the spec (or its base config, profile or --set) changed since {exp} was started:\n"
            + "\n".join(diff)
            + "\nRestore the original settings, or start a new sweep with another name or --storage."
        )


def has_experiment(sweep: Sweep) -> bool:
    """Does the experiment folder already hold a sweep (spec files or Tune state)?"""
    exp = sweep.experiment_dir
    return exp.is_dir() and any(
        (exp / f).exists() for f in (SPEC_FILE, HASH_FILE, "tuner.pkl")
    ) or bool(list(exp.glob("experiment_state-*.json")) if exp.is_dir() else [])
