"""Grid: the spec's variants × axes × seeds expanded into validated trials, and their one Tune form (no Ray).

Tune receives the expanded list itself (``{"trial": tune.grid_search([t.to_tune() ...])}`` in the driver),
so the trials a dry run prints, the ones the driver prepares data for and the ones Tune runs are the same
objects, in the same order (variants, then axes in spec order, then seeds; Tune numbers trials in that order).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from delo.config import RunConfig, apply_overrides, build_config, build_or_collect, key_problem
from delo.sweep.search import search_label, search_overrides

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
"""Spec names and variant names: they name folders."""
TRIAL_KEY = "trial"
"""The one key of a grid trial's Tune config."""


class GridSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: dict[str, dict[str, Any]] = {}
    """Named variants, each a dict of dotted run-config overrides ({} = the base as is)."""
    axes: dict[str, list[Any]] = {}
    """A dotted key -> list of values, or a free name -> list of dicts of dotted overrides (joint axis)."""
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    """Training seeds (top-level ``seed`` of the run config); every point runs once per seed."""


@dataclass(frozen=True)
class TrialSpec:
    """One trial: its label (variant + axis points; E/r for a search), variant, seed and dotted overrides over
    the base (the seed included). ``config`` is the validated RunConfig where the driver built it."""

    label: str
    variant: str | None
    """The grid variant's name ("" in a grid without variants); None for a search trial."""
    seed: int
    overrides: dict[str, Any]
    config: RunConfig | None = field(default=None, compare=False, repr=False)

    def to_tune(self) -> dict[str, Any]:
        """The trial as Tune carries it under ``TRIAL_KEY`` (plain values: Tune copies and logs its configs)."""
        return {k: v for k, v in asdict(self).items() if k != "config"}

    def run_config(self, base: dict[str, Any]) -> RunConfig:
        """The typed RunConfig this trial runs: base <- its overrides (validated, every problem at once)."""
        return self.config or build_config(apply_overrides(base, self.overrides), f"trial {self.label}")


def trial_of(config: dict[str, Any]) -> TrialSpec:
    """A trial's Tune config -> its TrialSpec: a grid trial carries it whole; a search trial is the searcher's
    suggestion (derived run-config keys) plus the seed."""
    if TRIAL_KEY in config:
        return TrialSpec(**config[TRIAL_KEY])
    return TrialSpec(search_label(config), None, int(config.get("seed", 0)), search_overrides(config))


# ----------------------------------------------------------------------------------------------------------
# Expansion


@dataclass(frozen=True)
class GridPoint:
    """One value of a variant list or axis: a short name and its dotted overrides."""

    name: str
    overrides: dict[str, Any]


def grid_points(grid: GridSpec, errors: list[str]) -> tuple[list[GridPoint], dict[str, list[GridPoint]]]:
    """The variant points (one nameless point when there are none) and each axis's points, keys checked."""
    variants = []
    for name, overrides in grid.variants.items():
        if not NAME.match(name):
            errors.append(
                f"grid.variants.{name}: use letters, digits, '_', '-', '.' (it names trial folders)"
            )
        if not isinstance(overrides, dict):
            errors.append(
                f"grid.variants.{name}: must be a mapping of dotted run-config keys, got {overrides!r}"
            )
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
                errors.append(
                    f"grid.axes.{axis}: a joint axis needs a plain name (not 'variant'/'seed', no dots)"
                )
            axes[axis] = [
                GridPoint(
                    ",".join(f"{_short(k)}={v}" for k, v in point.items()),
                    _checked(point, f"grid.axes.{axis}[{i}]", errors),
                )
                for i, point in enumerate(values)
            ]
        elif any(joint):
            errors.append(f"grid.axes.{axis}: mixes mappings and plain values")
        else:
            problem = key_problem(axis)
            if problem:
                errors.append(f"grid.axes: {problem} (an axis of plain values must name a run-config key)")
                continue
            axes[axis] = [GridPoint(f"{_short(axis)}={v}", {axis: v}) for v in values]
    return variants, axes


def expand_grid(
    grid: GridSpec, base: dict[str, Any], set_keys: set[str], errors: list[str]
) -> list[TrialSpec]:
    """Every (variant, axis point..., seed) as a validated trial; ``set_keys`` are --set run-config keys, which a
    grid must not also set (the --set would be silently ignored)."""
    variants, axes = grid_points(grid, errors)
    if errors:
        return []
    if len(set(grid.seeds)) != len(grid.seeds):
        errors.append(f"grid.seeds: duplicates in {grid.seeds}")
    trials: list[TrialSpec] = []
    for variant in variants:
        for combo in _product([axes[a] for a in axes]):
            for seed in grid.seeds:
                sources = [(f"grid.variants.{variant.name}", variant.overrides)]
                sources += [(f"grid.axes.{a}", p.overrides) for a, p in zip(axes, combo, strict=True)]
                overrides = _merge_sources(sources, set_keys, errors)
                overrides["seed"] = seed
                label = _label(variant, combo)
                cfg = build_or_collect(apply_overrides(base, overrides), f"trial {label} seed {seed}", errors)
                if cfg is not None:
                    trials.append(TrialSpec(label, variant.name, seed, overrides, cfg))
    labels = [(t.label, t.seed) for t in trials]
    if len(set(labels)) != len(labels):
        errors.append("grid: two trials share a label and seed (give variants distinct names)")
    return trials


def _checked(overrides: dict[str, Any], where: str, errors: list[str]) -> dict[str, Any]:
    for key in overrides:
        problem = key_problem(key)
        if problem:
            errors.append(f"{where}: {problem}")
    return dict(overrides)


def _short(dotted: str) -> str:
    return dotted.rsplit(".", 1)[-1]


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
                errors.append(
                    f"--set {key}: {where} sets it for every trial, so the override would be ignored"
                )
            owner[key] = where
            merged[key] = value
    return merged


def _label(variant: GridPoint, combo: tuple[GridPoint, ...]) -> str:
    parts = [variant.name] if variant.name else []
    parts += [p.name for p in combo]
    return "_".join(parts) or "base"
