"""Report layouts: one object per value of a spec's ``table``, which owns its results.md table, its reference row
(what the paired differences compare against), its figures and the paper figures it prints (no Ray, no
matplotlib; the spec schema reads the names from :data:`TABLES`).

:mod:`delo.sweep.report` writes a layout's rows and paired differences; :mod:`delo.sweep.plots` draws the figures
it names. Paper figures are method.md §13's (UPMC-Food101-CMML, ViLT-B/32, η = 0.7 both); each method's Table 2
row and name come from :mod:`delo.methods.registry`, DeLo's own ablation rows from :data:`DELO_VARIANTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from delo.methods.registry import METHODS
from delo.metric_keys import FINAL_AP, FINAL_AP_TASK_AWARE, FINAL_FG, FINAL_FG_TASK_AWARE, TASK, test_key
from delo.sweep.experiment import Status
from delo.sweep.records import (
    TrialRecord,
    best_trial,
    fmt_ms,
    fmt_num,
    fmt_params,
    groups,
    mean_ci,
    metric,
    params_of,
    pareto_front,
    short_value,
    swept_keys,
)

Paper = tuple[float, float]
"""(AP, FG) of a paper row."""
DELO = "delo"
"""DeLo's ``model.method``, which is also the ``model.variant`` of the full method."""
DELO_PAPER: Paper = METHODS[DELO].paper
"""DeLo at the paper point (E=16, r=4, all three losses): its Table 2 row and the full row of Tables 4, 5 and 6."""
PAPER_NOTE = (
    "Paper: UPMC-Food101-CMML, ViLT-B/32, η = 0.7 both (method.md §13); comparable only with the "
    "food101 profile."
)


@dataclass(frozen=True)
class DeLoVariant:
    """One of DeLo's Table 4 rows, by ``model.variant``."""

    display: str
    paper: Paper
    shows: tuple[str, ...] = ()
    """The ``model.*`` keys its row name shows."""


DELO_VARIANTS = {
    DELO: DeLoVariant(METHODS[DELO].display, DELO_PAPER, ("E", "r")),
    "delo_lora": DeLoVariant("DeLo-LoRA", (60.39, 12.08), ("r",)),
    "no_guide": DeLoVariant("w/o Cross-Modal Guide", (48.84, 20.13)),
    "unified_pool": DeLoVariant("w/o Modality-Specific Factor Pool", (56.52, 13.76)),
}
"""``model.variant`` -> its Table 4 row (the components table; the methods table names DeLo's ablations by it)."""


class TableLayout:
    """One row per trial group (the ``generic`` layout); each subclass is one value of a spec's ``table``."""

    name = "generic"
    figures: tuple[str, ...] = ("ap_fg", "best_matrix")
    """What :func:`delo.sweep.plots.write_plots` draws, in order (names in ``plots.FIGURES``)."""

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        """The layout's results.md section."""
        out = ["## Results", "", "| trial group | AP ↑ | FG ↓ | n |", "|---|---|---|---|"]
        for label, recs in groups(records).items():
            out.append(
                f"| {label} | {ms(recs, FINAL_AP, split)} | {ms(recs, FINAL_FG, split)} | {n_of(recs)} |"
            )
        return out

    def display(self, rec: TrialRecord) -> str:
        """The name of ``rec``'s row in figures: its group's label unless the layout names rows itself."""
        return rec.label

    def paper(self, rec: TrialRecord) -> Paper | None:
        """The paper's (AP, FG) for the row of ``rec``'s group; None when the paper has no such row."""
        return None

    def is_reference(self, rec: TrialRecord) -> bool:
        """Whether ``rec``'s group is the row the others are compared against (paired by seed)."""
        return False

    def reference_group(self, records: list[TrialRecord]) -> str | None:
        """The label of the first group that is the reference row; None for a layout without one, or when the
        grid lacks that row."""
        return next((label for label, recs in groups(records).items() if self.is_reference(recs[0])), None)

    def floor_group(self, records: list[TrialRecord]) -> str | None:
        """The label of the first group of the floor method (the frozen backbone, registry ``floor``), in any
        layout; None when the grid has no floor row."""
        return next((label for label, recs in groups(records).items() if is_floor(recs[0])), None)


def is_floor(rec: TrialRecord) -> bool:
    """Whether ``rec`` ran the floor method (no adapter)."""
    entry = METHODS.get(rec.cfg("model.method", DELO))
    return entry is not None and entry.floor


class RankFactor(TableLayout):
    """Paper Table 5: E × r, against the paper point."""

    name = "rank_factor"
    figures = ("ap_grid", "best_matrix")
    PAPER_POINT = (16, 4)
    """The paper's default (E, r) (method.md §11)."""
    PAPER = {
        (16, 2): (63.78, 11.20),
        PAPER_POINT: DELO_PAPER,
        (16, 8): (67.11, 10.89),
        (32, 2): (64.53, 13.37),
        (32, 4): (68.03, 8.92),
        (32, 8): (67.92, 9.24),
    }

    @staticmethod
    def _er(rec: TrialRecord) -> tuple[Any, Any]:
        return rec.cfg("model.E"), rec.cfg("model.r")

    def paper(self, rec: TrialRecord) -> Paper | None:
        return self.PAPER.get(self._er(rec))

    def is_reference(self, rec: TrialRecord) -> bool:
        return self._er(rec) == self.PAPER_POINT

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        out = [
            "## Table 5: number of factors E and rank r",
            "",
            "| E | r | AP ↑ | FG ↓ | task-aware AP | trainable | total | n | paper AP / FG |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for recs in sorted(
            groups(records).values(), key=lambda g: (g[0].cfg("model.E", 0), g[0].cfg("model.r", 0))
        ):
            E, r = self._er(recs[0])
            trainable, total = param_cells(recs)
            out.append(
                f"| {E} | {r} | {ms(recs, FINAL_AP, split)} | {ms(recs, FINAL_FG, split)} | "
                f"{ms(recs, FINAL_AP_TASK_AWARE, split)} | {trainable} | {total} | {n_of(recs)} | "
                f"{paper_cell(self.paper(recs[0]))} |"
            )
        return out + [
            "",
            "Trainable = the latest task's adapters and head (what its optimiser gets); total = backbone + every task's adapters and heads (delo.methods.delo.params, counted by the runner). "
            + PAPER_NOTE,
        ]


class Components(TableLayout):
    """Paper Table 4: DeLo's components, against the full method. A spec variant named after one of
    :data:`DELO_VARIANTS` is that paper row."""

    name = "components"

    def _variant(self, rec: TrialRecord) -> DeLoVariant | None:
        return (
            DELO_VARIANTS.get(rec.cfg("model.variant", rec.variant)) if rec.variant in DELO_VARIANTS else None
        )

    def paper(self, rec: TrialRecord) -> Paper | None:
        row = self._variant(rec)
        return row.paper if row else None

    def is_reference(self, rec: TrialRecord) -> bool:
        return rec.variant == DELO and rec.cfg("model.variant", DELO) == DELO

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        out = [
            "## Table 4: components",
            "",
            "| Variant | AP ↑ | FG ↓ | task-aware AP | n | paper AP / FG |",
            "|---|---|---|---|---|---|",
        ]
        for recs in groups(records).values():
            first, row = recs[0], self._variant(recs[0])
            if row is not None:
                shown = ", ".join(f"{k}={first.cfg('model.' + k)}" for k in row.shows)
                name = row.display + (f" ({shown})" if shown else "")
            elif is_floor(first):
                name = METHODS[first.cfg("model.method")].display
            else:
                name = f"{first.label} ({first.cfg('model.variant', first.variant)})"
            out.append(
                f"| {name} | {ms(recs, FINAL_AP, split)} | {ms(recs, FINAL_FG, split)} | "
                f"{ms(recs, FINAL_AP_TASK_AWARE, split)} | {n_of(recs)} | {paper_cell(self.paper(first))} |"
            )
        return out + ["", PAPER_NOTE]


class Losses(TableLayout):
    """Paper Table 6: the loss terms, against all three (λ1 > 0 and λ2 > 0)."""

    name = "losses"
    PAPER = {(False, False): (61.95, 12.37), (True, True): DELO_PAPER}
    """(L_align on, L_con on) -> (AP, FG); the rows with one auxiliary loss need the typeset check marks."""

    @staticmethod
    def _lambdas(rec: TrialRecord) -> tuple[float, float]:
        return rec.cfg("loss.lambda1", 0) or 0, rec.cfg("loss.lambda2", 0) or 0

    def paper(self, rec: TrialRecord) -> Paper | None:
        l1, l2 = self._lambdas(rec)
        return self.PAPER.get((l1 > 0, l2 > 0))

    def is_reference(self, rec: TrialRecord) -> bool:
        return all(x > 0 for x in self._lambdas(rec))

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        out = [
            "## Table 6: losses",
            "",
            "| L_cls | L_align (λ1) | L_con (λ2) | AP ↑ | FG ↓ | task-aware AP | n | paper AP / FG |",
            "|---|---|---|---|---|---|---|---|",
        ]

        def mark(x):
            return f"✓ ({x:g})" if x > 0 else ""

        for recs in groups(records).values():
            l1, l2 = self._lambdas(recs[0])
            out.append(
                f"| ✓ | {mark(l1)} | {mark(l2)} | {ms(recs, FINAL_AP, split)} | {ms(recs, FINAL_FG, split)} "
                f"| {ms(recs, FINAL_AP_TASK_AWARE, split)} | {n_of(recs)} | {paper_cell(self.paper(recs[0]))} |"
            )
        return out + [
            "",
            PAPER_NOTE + " The paper's rows with one auxiliary loss (65.15 / 10.85 and 65.88 / 10.74) "
            "need its typeset check marks to assign.",
        ]


class Methods(TableLayout):
    """Paper Table 2: the methods, against DeLo. Names and paper rows come from the method registry; a DeLo
    trial with an ablation variant is its own row (DeLo-LoRA), which Table 2 does not have."""

    name = "methods"
    figures = ("ap_fg", "task_routing", "best_matrix")

    @staticmethod
    def row_key(rec: TrialRecord) -> str:
        """``model.method``, or the ``model.variant`` of a DeLo ablation."""
        method, variant = rec.cfg("model.method", DELO), rec.cfg("model.variant", DELO)
        return variant if method == DELO and variant != DELO else method

    def display(self, rec: TrialRecord) -> str:
        key = self.row_key(rec)
        if (
            key in METHODS
        ):  # "+tkm": a method whose task inference is DeLo's Task-Key Memory instead of its own
            tkm = rec.cfg(f"model.{key}.task_inference") == "tkm"
            return METHODS[key].display + (" +tkm" if tkm else "")
        return DELO_VARIANTS[key].display if key in DELO_VARIANTS else key

    def paper(self, rec: TrialRecord) -> Paper | None:
        entry = METHODS.get(self.row_key(rec))
        return entry.paper if entry else None

    def is_reference(self, rec: TrialRecord) -> bool:
        return self.row_key(rec) == DELO

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        out = [
            "## Table 2: methods",
            "",
            "| Method | AP ↑ | FG ↓ | task-aware AP | task-aware FG | trainable | total | train s / task | "
            "eval s / task | n | paper AP / FG |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for recs in groups(records).values():
            trainable, total = param_cells(recs)
            out.append(
                f"| {self.display(recs[0])} (`{recs[0].label}`) | {ms(recs, FINAL_AP, split)} | "
                f"{ms(recs, FINAL_FG, split)} | {ms(recs, FINAL_AP_TASK_AWARE, split)} | "
                f"{ms(recs, FINAL_FG_TASK_AWARE, split)} | {trainable} | {total} | "
                f"{_seconds(recs, 'train')} | {_seconds(recs, 'eval')} | {n_of(recs)} | "
                f"{paper_cell(self.paper(recs[0]))} |"
            )
        return out + [
            "",
            "AP and FG are task-agnostic (the method infers each sample's task); task-aware AP and FG are the same "
            "model told the true task (`*_task_aware`), so the gap between the two is the cost of the method's task "
            "inference, and task-aware FG is what training later tasks did to earlier ones' own read-out. "
            "Trainable = what the latest task's optimiser gets (adapters or prompts, and the head); "
            "total = every parameter, backbone included. Seconds are wall-clock means over tasks on the machine "
            "that ran the trial (trials share its cores). Paper: Table 2, UPMC-Food101-CMML, ViLT-B/32, η = 70 % "
            "both (65 % / 65 %); comparable only with the food101 profile.",
        ]


class Missing(TableLayout):
    """The missing-rate grid: η × missing type, no paper row."""

    name = "missing"
    figures = ("ap_missing", "best_matrix")
    TYPES = ("text", "image", "both")

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        by: dict[tuple[str, float], list[TrialRecord]] = {}
        for recs in groups(records).values():
            key = (recs[0].cfg("data.missing.type"), recs[0].cfg("data.missing.eta"))
            by.setdefault(key, []).extend(recs)
        etas = sorted({e for _, e in by})
        types = [t for t in self.TYPES if any(k[0] == t for k in by)]
        out = [
            "## Missing rate η × missing type (AP ↑ / FG ↓)",
            "",
            "| type \\ η | " + " | ".join(f"{e:g}" for e in etas) + " |",
            "|---" * (len(etas) + 1) + "|",
        ]
        for t in types:
            cells = [
                f"{ms(by[(t, e)], FINAL_AP, split)} / {ms(by[(t, e)], FINAL_FG, split)}"
                if (t, e) in by
                else "–"
                for e in etas
            ]
            out.append(f"| {t} | " + " | ".join(cells) + " |")
        return out + ["", "`both`: half of the missing samples lack text, half the image (protocol.md §4)."]


class Search(TableLayout):
    """A search: completed trials ranked by val final AP, and the best one."""

    name = "search"
    figures = ("ap_fg_top", "best_matrix", "optuna")

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        test_ap, test_fg = test_key(FINAL_AP), test_key(FINAL_FG)
        done = sorted((r for r in records if r.completed), key=lambda r: -(r.last.get(FINAL_AP) or -1e9))
        keys = swept_keys(records)
        out = [
            "## Search: completed trials by val final_ap",
            "",
            "| rank | trial | " + " | ".join(keys) + " | val AP | val FG | test AP | test FG |",
            "|---" * (len(keys) + 6) + "|",
        ]
        for i, r in enumerate(done[:20], 1):
            vals = " | ".join(short_value(r.overrides.get(k)) for k in keys)
            out.append(
                f"| {i} | `{r.name}` | {vals} | {fmt_num(r.last.get(FINAL_AP))} | {fmt_num(r.last.get(FINAL_FG))} "
                f"| {fmt_num(r.last.get(test_ap))} | {fmt_num(r.last.get(test_fg))} |"
            )
        stopped = sorted(r.last.get(TASK) or 0 for r in records if r.status == Status.STOPPED)
        at = ", ".join(f"{stopped.count(t)} at task {t}" for t in sorted(set(stopped)))
        best = best_trial(records)
        out += [
            "",
            f"{len(done)} completed, {len(stopped)} stopped early by ASHA"
            + (f" ({at})" if at else "")
            + " (told to Optuna as PRUNED).",
        ]
        if best is not None:
            sets = ", ".join(f"{k}={short_value(v)}" for k, v in best.overrides.items())
            out += [
                "",
                (
                    f"**Best (val final_ap):** `{best.name}`: {sets}. val AP {fmt_num(best.last.get(FINAL_AP))}, "
                    f"FG {fmt_num(best.last.get(FINAL_FG))}; **test** AP {fmt_num(best.last.get(test_ap))}, "
                    f"FG {fmt_num(best.last.get(test_fg))} (test rows stored with the trial, never used for "
                    "selection)."
                ),
            ]
        return out


class Pareto(Search):
    """A multi-objective search: the Pareto front (val final AP up, trainable parameters down), each front trial
    with its val and test rows, then the search's ranking."""

    name = "pareto"
    figures = ("pareto", "best_matrix", "optuna")

    def rows(self, records: list[TrialRecord], split: str) -> list[str]:
        front = pareto_front(records)
        keys = swept_keys(records)
        out = [
            "## Pareto front",
            "",
            "Completed trials that no other completed trial beats on both val final AP (higher) and trainable "
            "parameters per task (fewer: the latest task's adapters and head, counted by the runner); by size. "
            "Chosen on val; the test row is reported, never used for the choice.",
            "",
            "| trial | " + " | ".join(keys) + " | trainable | split | AP ↑ | FG ↓ | Last | BWT |",
            "|---" * (len(keys) + 7) + "|",
        ]
        for r in front:
            first = [
                f"`{r.name}`",
                *(short_value(r.overrides.get(k)) for k in keys),
                fmt_params(params_of(r)),
            ]
            for row_split in ("val", "test"):
                names = [FINAL_AP, FINAL_FG, "final_last", "final_bwt"]
                if row_split == "test":
                    names = [test_key(k) for k in names]
                    if r.last.get(names[0]) is None:
                        continue
                    first = [""] * len(first)  # the test row sits under its val row
                cells = [*first, row_split, *(fmt_num(r.last.get(k)) for k in names)]
                out.append("| " + " | ".join(cells) + " |")
        if not front:
            out.append("| (no completed trial with a parameter count) |" + " |" * (len(keys) + 6))
        return out + ["", *super().rows(records, split)]


GENERIC = TableLayout()
LAYOUTS: dict[str, TableLayout] = {
    layout.name: layout
    for layout in (RankFactor(), Components(), Losses(), Missing(), Search(), Pareto(), Methods(), GENERIC)
}
"""A spec's ``table`` -> its layout (paper Tables 5, 4, 6, 2; the missing grid; the search ranking; generic)."""
TABLES = tuple(LAYOUTS)
"""Every value a spec's ``table`` may take."""


def layout_of(table: str | None) -> TableLayout:
    """The layout of a saved spec's ``table`` (generic when it names none this version knows)."""
    return LAYOUTS.get(table, GENERIC)


# ----------------------------------------------------------------------------------------------------------
# Cells


def ms(recs: list[TrialRecord], key: str, split: str) -> str:
    """Mean ± 95 % CI half-width of ``key`` over the completed trials of a group."""
    return fmt_ms(*mean_ci([metric(r, key, split) for r in recs if r.completed]))


def n_of(recs: list[TrialRecord]) -> str:
    return f"{sum(r.completed for r in recs)}/{len(recs)}"


def param_cells(recs: list[TrialRecord]) -> tuple[str, str]:
    p = next((r.params for r in recs if r.params), None) or {}
    return fmt_params(p.get("trainable")), fmt_params(p.get("total"))


def paper_cell(ref: Paper | None) -> str:
    return f"{ref[0]:.2f} / {ref[1]:.2f}" if ref else "–"


def _seconds(recs: list[TrialRecord], part: str) -> str:
    done = [r.task_seconds[part] for r in recs if r.completed and part in r.task_seconds]
    return f"{sum(done) / len(done):.1f}" if done else "–"
