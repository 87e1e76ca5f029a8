"""Table layouts: one object per spec ``table`` owns its reference row, figures and paper figures; method names and
Table 2 come from the method registry."""

import pytest

from delo.methods.registry import METHODS
from delo.sweep.layouts import DELO_PAPER, GENERIC, LAYOUTS, TABLES, layout_of
from delo.sweep.plots import FIGURES
from delo.sweep.records import TrialRecord


def _rec(label: str, variant: str = "", **config) -> TrialRecord:
    """A completed trial of group ``label``; ``config`` as dotted keys (model_E=16 -> model.E)."""
    nested: dict = {}
    for key, value in config.items():
        section, leaf = key.split("_", 1)
        nested.setdefault(section, {})[leaf] = value
    return TrialRecord(
        name=f"{label}_s0", label=label, variant=variant, seed=0, config=nested, status="COMPLETED"
    )


def test_tables_are_the_layouts_names():
    assert TABLES == (
        "rank_factor",
        "components",
        "losses",
        "missing",
        "search",
        "pareto",
        "methods",
        "generic",
    )
    assert all(LAYOUTS[name].name == name for name in TABLES)
    assert layout_of("no such table") is GENERIC and layout_of(None) is GENERIC


@pytest.mark.parametrize("table", TABLES)
def test_every_figure_a_layout_names_is_drawn(table):
    figures = LAYOUTS[table].figures
    assert figures and set(figures) <= set(FIGURES) and figures[-1] in ("best_matrix", "optuna")


def test_figures_per_layout():
    assert LAYOUTS["rank_factor"].figures == ("ap_grid", "best_matrix")
    assert LAYOUTS["missing"].figures == ("ap_missing", "best_matrix")
    assert LAYOUTS["search"].figures == ("ap_fg_top", "best_matrix", "optuna")
    assert LAYOUTS["pareto"].figures == ("pareto", "best_matrix", "optuna")
    assert LAYOUTS["methods"].figures == ("ap_fg", "task_routing", "best_matrix")
    for table in ("components", "losses", "generic"):
        assert LAYOUTS[table].figures == ("ap_fg", "best_matrix")


def test_rank_factor_reference_is_the_paper_point():
    records = [
        _rec("E=16,r=2", model_E=16, model_r=2),
        _rec("E=32,r=4", model_E=32, model_r=4),
        _rec("E=16,r=4", model_E=16, model_r=4),
    ]
    layout = LAYOUTS["rank_factor"]
    assert layout.reference_group(records) == "E=16,r=4"
    assert layout.reference_group(records[:2]) is None
    assert layout.paper(records[0]) == (63.78, 11.20) and layout.paper(records[2]) == DELO_PAPER
    assert layout.paper(_rec("E=8,r=2", model_E=8, model_r=2)) is None


def test_components_reference_is_the_full_method_and_rows_are_deLos_variants():
    records = [
        _rec("no_guide", "no_guide", model_variant="no_guide"),
        _rec("delo", "delo", model_variant="delo"),
        _rec("mine", "mine", model_variant="delo_lora"),
    ]
    layout = LAYOUTS["components"]
    assert layout.reference_group(records) == "delo"
    assert layout.reference_group([records[0], _rec("x", "x")]) is None  # a full method not named delo
    assert layout.paper(records[0]) == (48.84, 20.13)
    assert layout.paper(records[2]) is None  # a spec variant not named after a paper row
    rows = "\n".join(layout.rows(records, "val"))
    assert "| w/o Cross-Modal Guide |" in rows and "| mine (delo_lora) |" in rows


def test_losses_reference_has_every_loss_term():
    records = [
        _rec("cls", "cls", loss_lambda1=0.0, loss_lambda2=0.0),
        _rec("cls_align", "cls_align", loss_lambda1=0.1, loss_lambda2=0.0),
        _rec("full", "full", loss_lambda1=0.1, loss_lambda2=0.1),
    ]
    layout = LAYOUTS["losses"]
    assert layout.reference_group(records) == "full"
    assert layout.reference_group(records[:2]) is None
    assert [layout.paper(r) for r in records] == [(61.95, 12.37), None, DELO_PAPER]


def test_methods_names_and_table_2_come_from_the_registry():
    records = [
        _rec("l2p", "l2p", model_method="l2p"),
        _rec("lora", "lora", model_method="delo", model_variant="delo_lora"),
        _rec("delo", "delo", model_method="delo", model_variant="delo"),
        _rec("mora", "mora", model_method="mora"),
    ]
    layout = LAYOUTS["methods"]
    assert layout.reference_group(records) == "delo"
    assert layout.reference_group(records[:2]) is None  # DeLo-LoRA is not DeLo
    assert [layout.display(r) for r in records] == [METHODS["l2p"].display, "DeLo-LoRA", "DeLo", "MoRA"]
    assert [layout.paper(r) for r in records] == [METHODS["l2p"].paper, None, METHODS["delo"].paper, None]
    assert layout.display(_rec("old", "old", model_method="retired")) == "retired"


@pytest.mark.parametrize("table", ["missing", "search", "pareto", "generic"])
def test_layouts_without_a_reference_row(table):
    records = [_rec("delo", "delo", model_method="delo", model_E=16, model_r=4, loss_lambda1=0.1)]
    assert LAYOUTS[table].reference_group(records) is None
    assert LAYOUTS[table].paper(records[0]) is None


def test_methods_rows_name_the_tkm_variant():
    from delo.sweep.layouts import layout_of
    from delo.sweep.records import TrialRecord

    methods = layout_of("methods")
    plain = TrialRecord(
        name="a", config={"model": {"method": "rank1_pool", "rank1_pool": {"task_inference": "heads"}}}
    )
    tkm = TrialRecord(
        name="b", config={"model": {"method": "rank1_pool", "rank1_pool": {"task_inference": "tkm"}}}
    )
    assert methods.display(plain) == "Rank-1 Expert Pool"
    assert methods.display(tkm) == "Rank-1 Expert Pool +tkm"
