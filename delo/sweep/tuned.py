"""The final methods spec from the equal-budget searches (issue 24): each row of a grid spec (``sweeps/methods.yaml``)
at its method's best val configuration, over seeds no search used.

A row's method is its ``model.method`` (``delo`` when unset); its search is ``search_<method>`` (``search`` for
DeLo) under the searches root. The row keeps its own keys (``model.variant: delo_lora``, ``task_inference: tkm``)
and takes every key its search varied from the search's best trial: best by val final AP among completed trials,
as Tune's ``get_best_result`` (:func:`delo.sweep.records.best_trial`). A search that has not ended all its
samples is refused: its best so far is not the best of an equal budget.

The spec is written as YAML text with one comment per row naming the search folder, the trial and its val final
AP, so the table's provenance is readable in the file that produced it. No Ray, no torch: files only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from delo.config import ConfigError
from delo.config.loading import read_yaml_mapping
from delo.metric_keys import FINAL_AP
from delo.sweep.experiment import SPEC_FILE, Status, read_saved_spec
from delo.sweep.records import best_trial, collect

ENDED = {Status.COMPLETED, Status.STOPPED, Status.ERROR}


@dataclass(frozen=True)
class TunedRow:
    variant: str
    config: dict[str, Any]  # the row's own keys over the search's best overrides
    search: str  # the search folder's name
    trial: str  # the best trial's folder name
    val_final_ap: float


def search_name(method: str) -> str:
    return "search" if method == "delo" else f"search_{method}"


def read_methods_spec(path: Path) -> dict[str, Any]:
    """The grid spec whose rows get tuned, read once (ConfigError naming the file and the key when it is wrong)."""
    raw = read_yaml_mapping(
        path, "sweep spec", "a sweep spec is a mapping (name, base, grid, ...)", empty_ok=False
    )
    variants = (raw.get("grid") or {}).get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError(f"{path}: grid.variants: a mapping of rows is needed (as sweeps/methods.yaml)")
    if "base" not in raw:
        raise ConfigError(
            f"{path}: base: the run config the rows start from is needed (as sweeps/methods.yaml)"
        )
    return raw


def tuned_rows(spec: dict[str, Any], searches_root: Path) -> list[TunedRow]:
    """One row per variant of the grid spec, at its method's best searched configuration. One ConfigError lists every
    search that is missing, unfinished or without a completed trial."""
    rows, errors, best_of = [], [], {}
    for variant, own in spec["grid"]["variants"].items():
        own = dict(own or {})
        method = own.get("model.method", "delo")
        name = search_name(method)
        if name not in best_of:
            best_of[name] = _best(searches_root / name, method, errors)
        best = best_of[name]
        if best is None:
            continue
        overrides, trial, ap = best
        rows.append(TunedRow(variant, {**overrides, **own}, name, trial, ap))
    if errors:
        raise ConfigError("\n".join(errors))
    return rows


def _best(exp: Path, method: str, errors: list[str]) -> tuple[dict[str, Any], str, float] | None:
    if not (exp / SPEC_FILE).is_file():
        errors.append(f"{exp}: no search folder (run: python launch/sweep.py sweeps/{exp.name}.yaml)")
        return None
    wanted = int((read_saved_spec(exp).get("search") or {}).get("num_samples") or 0)
    if not wanted:
        errors.append(f"{exp / SPEC_FILE}: not a search (spec.search.num_samples is missing)")
        return None
    records = collect(exp)
    ended = sum(r.status in ENDED for r in records)
    if ended < wanted:
        errors.append(
            f"{exp}: {ended} of {wanted} trials ended; finish the search first "
            f"(python launch/sweep.py sweeps/{exp.name}.yaml --resume)"
        )
        return None
    best = best_trial(records)
    if best is None:
        errors.append(f"{exp}: no completed trial with a val {FINAL_AP}")
        return None
    searched = best.cfg("model.method", "delo")  # what the trial ran, whatever spec or profile set it
    if searched != method:
        errors.append(f"{exp}: searched model.method {searched!r}, but the row needs {method!r}")
        return None
    overrides = {k: v for k, v in best.overrides.items() if k != "seed"}
    return overrides, best.name, float(best.last[FINAL_AP])


def tuned_spec_text(
    raw: dict[str, Any], source: str, rows: list[TunedRow], seeds: list[int], name: str
) -> str:
    """The spec as YAML text: the methods spec's base and resources, the tuned rows, the given seeds; ``source``
    names the methods spec file in the description."""
    head = {
        "name": name,
        "description": (
            f"{raw.get('name', 'methods')} at each method's best val configuration from its equal-budget search "
            f"(written by launch/tuned.py from {source}); seeds that no search used."
        ),
        "table": raw.get("table", "methods"),
        "base": raw["base"],
    }
    lines = [
        "# Written by `python launch/tuned.py`: do not edit by hand, re-run it after the searches change.",
        *yaml.safe_dump(head, sort_keys=False, width=120).splitlines(),
        "grid:",
        "  variants:",
    ]
    for row in rows:
        lines.append(f"    # {row.search}/{row.trial}: val final AP {row.val_final_ap:.2f}")
        flow = yaml.safe_dump(row.config, default_flow_style=True, sort_keys=True, width=10_000).strip()
        lines.append(f"    {row.variant}: {flow}")
    lines.append(f"  seeds: {list(seeds)}")
    rest = {k: raw[k] for k in ("resources", "max_concurrent") if k in raw}
    if rest:
        lines += yaml.safe_dump(rest, sort_keys=False, default_flow_style=None).splitlines()
    return "\n".join(lines) + "\n"
