"""Reports from files alone: results.csv, results.md in the paper layout (mean ± 95 % CI), failed trials, and
the plots, read from the figures they were drawn from (the saved_figures fixture, tests/conftest.py)."""

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from delo.sweep.experiment import error_reason
from delo.sweep.records import collect
from delo.sweep.report import write_report

ERROR_TXT = """Failure # 1 (occurred at 2026-01-01_00-00-00)
ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)
  File "delo/train.py", line 103, in train_task
    raise FloatingPointError("loss is NaN at step 5")
FloatingPointError: loss is NaN at step 5
"""


def _trial(
    exp: Path,
    name: str,
    E: int,
    r: int,
    seed: int,
    ap: float | None,
    *,
    tasks: int = 3,
    error: bool = False,
    test: bool = True,
) -> None:
    d = exp / name
    (d / name).mkdir(parents=True)
    cfg = {
        "seed": seed,
        "model": {"E": E, "r": r, "variant": "delo"},
        "loss": {"lambda1": 0.1, "lambda2": 0.1},
    }
    (d / "trial.json").write_text(
        json.dumps(
            {
                "trial_id": f"x_{name[-5:]}",
                "label": f"E={E},r={r}",
                "variant": "",
                "seed": seed,
                "overrides": {"model.E": E, "model.r": r, "seed": seed},
                "config": cfg,
                "out_dir": name,
            }
        )
    )
    rows = [{"task": t, "ap_seen": 50.0} for t in range(1, tasks + 1)]
    if ap is not None:
        rows[-1].update(
            final_ap=ap,
            final_fg=10.0 - seed,
            **({"test_final_ap": ap - 1, "test_final_fg": 11.0} if test else {}),
        )
        (d / name / "result.json").write_text(
            json.dumps(
                {
                    "matrix": [[60.0, None, None], [55.0, 61.0, None], [50.0, 52.0, 62.0]],
                    "test_matrix": [[59.0, None, None], [54.0, 60.0, None], [49.0, 51.0, 61.0]],
                    "params": {"trainable": 1000 * E * 8, "total": 1_000_000 + 30_000 * E},
                }
            )
        )
    (d / "result.json").write_text(
        "\n".join(json.dumps(r) for r in rows) + '\n{"task": 9, "ap_se'
    )  # cut line
    if error:
        (d / "error.txt").write_text(ERROR_TXT)


def _exp(tmp_path, table="rank_factor"):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "sweep_spec.yaml").write_text(yaml.safe_dump({"spec": {"name": "rf", "table": table}, "base": {}}))
    _trial(exp, "E16-r2_s0_00000", 16, 2, 0, 60.0)
    _trial(exp, "E16-r2_s1_00001", 16, 2, 1, 62.0)
    _trial(exp, "E16-r4_s0_00002", 16, 4, 0, 70.0)
    _trial(exp, "E16-r4_s1_00003", 16, 4, 1, None, tasks=2, error=True)
    (exp / "trial_status.yaml").write_text(
        json.dumps(
            {
                "total_trials": 5,
                "trials": {
                    "E16-r4_s1_00003": {
                        "status": "ERROR",
                        "error": "FloatingPointError: loss is NaN at step 5",
                        "num_failures": 3,
                    },
                    "E32-r8_s0_00004": {"status": "PENDING", "trial_id": "x_00004"},
                },
            }
        )
    )
    return exp


def _figures(paths: list[Path], saved: list) -> dict:
    """The figure behind each PNG the report wrote, by file name (write_report returns them in writing order)."""
    pngs = [p.name for p in paths if p.suffix == ".png"]
    assert len(saved) == len(pngs) and all(p.is_file() for p in paths if p.suffix == ".png"), (pngs, saved)
    return dict(zip(pngs, saved, strict=True))


def _image(fig) -> list[list[float | None]]:
    """The cells an image plot shows (None: a masked, empty cell), rows top to bottom."""
    (image,) = fig.axes[0].images
    values = image.get_array().astype(float).filled(math.nan).tolist()
    return [[None if math.isnan(v) else v for v in row] for row in values]


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def _ticks(fig) -> tuple[list[str], list[str]]:
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()]


def test_error_reason_is_the_exception_line(tmp_path):
    (tmp_path / "error.txt").write_text(
        ERROR_TXT + ERROR_TXT.replace("# 1", "# 2").replace("step 5", "step 7")
    )
    assert error_reason(tmp_path / "error.txt") == "FloatingPointError: loss is NaN at step 7"
    assert "no error.txt" in error_reason(tmp_path / "missing.txt")


def test_collect_statuses(tmp_path):
    records = {r.name: r for r in collect(_exp(tmp_path))}
    assert records["E16-r2_s0_00000"].status == "COMPLETED"
    assert records["E16-r4_s1_00003"].status == "ERROR" and records["E16-r4_s1_00003"].tasks_done == 2
    assert records["E32-r8_s0_00004"].status == "PENDING"


def test_rank_factor_report(tmp_path, saved_figures):
    exp = _exp(tmp_path)
    paths = write_report(exp)
    assert {p.name for p in paths} == {
        "results.csv",
        "results.md",
        "results.tex",
        "ap_grid.png",
        "best_matrix.png",
    }
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert len(rows) == 5
    failed = next(r for r in rows if r["trial"] == "E16-r4_s1_00003")
    assert failed["status"] == "ERROR" and "loss is NaN" in failed["error"]
    assert rows[0]["model.E"] == "16" and rows[0]["params_trainable"] == "128000"
    md = (exp / "results.md").read_text()
    assert "| E | r | AP ↑ | FG ↓ | task-aware AP | trainable | total | n | paper AP / FG |" in md
    # test split (all completed trials stored test rows): 59, 61 -> mean 60, s = √2, 95 % CI half-width
    # t(0.975, 1) · s / √2 = 12.706
    assert "| 16 | 2 | 60.00 ± 12.71 | 11.00 ± 0.00 | – | 0.13M | 1.48M | 2/2 | 63.78 / 11.20 |" in md
    assert "| 16 | 4 | 69.00 | 11.00 | – | 0.13M | 1.48M | 1/2 |" in md
    assert (
        "## Failed trials" in md and "`E16-r4_s1_00003` (3 failure(s)): FloatingPointError: loss is NaN" in md
    )
    figures = _figures(paths, saved_figures)
    grid = figures["ap_grid.png"]  # test final AP per (E, r), the cells of the table above
    assert _image(grid) == [[60.0, 69.0]] and _ticks(grid) == (["2", "4"], ["16"])
    assert _texts(grid) == ["60.00\n± 12.71\n(n=2)", "69.00\n(n=1)\n(reference)"]  # one pair: no † possible
    lo, hi = grid.axes[0].images[0].get_clim()  # the reference 69 ± the widest interval 12.71
    assert (round(lo, 2), round(hi, 2)) == (56.29, 81.71)
    assert "test split" in grid.axes[0].get_title()
    best = figures["best_matrix.png"]  # the best trial by val final AP, its test matrix
    assert _image(best) == [[59.0, None, None], [54.0, 60.0, None], [49.0, 51.0, 61.0]]
    assert _texts(best) == ["59.0", "54.0", "60.0", "49.0", "51.0", "61.0"]
    assert "E16-r4_s0_00002\ntest split, seed 0" in best.axes[0].get_title()


def test_val_split_when_no_test_rows_and_search_layout(tmp_path, saved_figures):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "sweep_spec.yaml").write_text(yaml.safe_dump({"spec": {"name": "s", "table": "search"}}))
    _trial(exp, "E8_r2_s0_00000", 8, 2, 0, 55.0, test=False)
    _trial(exp, "E16_r4_s0_00001", 16, 4, 0, 65.0, test=False)
    _trial(exp, "E4_r1_s0_00002", 4, 1, 0, None, tasks=2)
    (exp / "trial_status.yaml").write_text(json.dumps({"trials": {"E4_r1_s0_00002": {"status": "STOPPED"}}}))
    paths = write_report(exp)
    md = (exp / "results.md").read_text()
    assert "Split in the tables: **val**" in md
    assert "1 stopped early by ASHA (1 at task 2)" in md  # where ASHA stopped it: the rung
    assert "**Best (val final_ap):** `E16_r4_s0_00001`" in md
    figures = _figures(paths, saved_figures)
    assert set(figures) == {"ap_fg.png", "best_matrix.png"}
    bars = figures["ap_fg.png"].axes[0]  # the completed groups, best val AP first
    assert [t.get_text() for t in bars.get_xticklabels()] == ["E=16,r=4", "E=8,r=2"]
    ap, fg = bars.containers
    assert (ap.get_label(), [b.get_height() for b in ap]) == ("AP ↑", [65.0, 55.0])
    assert (fg.get_label(), [b.get_height() for b in fg]) == ("FG ↓", [10.0, 10.0])
    assert "(val split)" in bars.get_title()
    best = figures["best_matrix.png"]
    assert _image(best) == [[60.0, None, None], [55.0, 61.0, None], [50.0, 52.0, 62.0]]
    assert "E16_r4_s0_00001\nval split, seed 0" in best.axes[0].get_title()


def test_confidence_interval_uses_students_t():
    from delo.sweep.records import mean_ci

    mean, half = mean_ci([1.0, 2.0, 3.0])  # s = 1, t(0.975, 2) = 4.3027
    assert mean == 2.0 and half == pytest.approx(4.302653 / 3**0.5, rel=1e-6)
    assert mean_ci([5.0]) == (5.0, None)
    assert mean_ci([]) == (None, None)


def _grid_trial(
    exp: Path,
    name: str,
    overrides: dict,
    seed: int,
    ap: float,
    fg: float,
    seconds=None,
    params=None,
    aware: float | None = None,
    run: dict | None = None,
) -> None:
    """A completed grid trial with val rows only; overrides are dotted run-config keys; ``seconds`` a list of
    (train, eval) seconds for tasks 1 and 2; ``aware`` its final task-aware AP; ``run`` more fields of the
    runner's result.json."""
    d = exp / name
    (d / name).mkdir(parents=True)
    cfg: dict = {"seed": seed}
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    label = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in overrides.items())
    info = {
        "trial_id": name[-5:],
        "label": overrides.get("variant", label),
        "variant": overrides.get("variant", ""),
        "seed": seed,
        "overrides": {**{k: v for k, v in overrides.items() if k != "variant"}, "seed": seed},
        "config": cfg,
        "out_dir": name,
    }
    (d / "trial.json").write_text(json.dumps(info))
    rows = [{"task": 1, "ap_seen": ap}, {"task": 2, "ap_seen": ap, "final_ap": ap, "final_fg": fg}]
    if aware is not None:
        rows[-1]["final_ap_task_aware"] = aware
    for row, (train_s, eval_s) in zip(rows, seconds or [], strict=False):
        row.update(train_time_s=train_s, eval_time_s=eval_s)
    (d / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = {"matrix": [[ap, None], [ap, ap]], **({"params": params} if params else {}), **(run or {})}
    (d / name / "result.json").write_text(json.dumps(result))


def _spec(exp: Path, table: str) -> None:
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "sweep_spec.yaml").write_text(
        yaml.safe_dump({"spec": {"name": table, "table": table}, "base": {}})
    )


def test_missing_grid_draws_ap_against_eta_per_type(tmp_path, saved_figures):
    exp = tmp_path / "missing"
    _spec(exp, "missing")
    n = 0
    for kind, lower in (("text", 0), ("image", 5), ("both", 10)):
        for eta in (0.1, 0.5, 0.9):
            over = {"data.missing.type": kind, "data.missing.eta": eta}
            _grid_trial(exp, f"t{n:05d}", over, 0, 80 - 20 * eta - lower, 5.0)
            n += 1
    written = write_report(exp)
    paths = {p.name: p for p in written}
    assert set(paths) == {"results.csv", "results.md", "results.tex", "ap_missing.png", "best_matrix.png"}
    figures = _figures(written, saved_figures)
    lines = figures["ap_missing.png"].axes[0].containers  # one error-bar line per missing type
    assert {c.get_label(): c.lines[0].get_xydata().tolist() for c in lines} == {
        "text missing": [[0.1, 78.0], [0.5, 70.0], [0.9, 62.0]],
        "image missing": [[0.1, 73.0], [0.5, 65.0], [0.9, 57.0]],
        "both missing": [[0.1, 68.0], [0.5, 60.0], [0.9, 52.0]],
    }
    assert _image(figures["best_matrix.png"]) == [[78.0, None], [78.0, 78.0]]  # text at η 0.1
    assert "| text | 78.00 / 5.00 | 70.00 / 5.00 | 62.00 / 5.00 |" in (exp / "results.md").read_text()


def test_components_paired_differences_vs_delo(tmp_path):
    exp = tmp_path / "components"
    _spec(exp, "components")
    data = {  # variant: [(seed, AP, FG)]
        "delo": [(0, 70.0, 5.0), (1, 72.0, 5.0), (2, 74.0, 5.0)],
        "no_guide": [(0, 60.0, 6.0), (1, 63.0, 7.0), (2, 63.0, 8.0)],
        "delo_lora": [(0, 71.0, 5.0), (1, 73.0, 5.0)],
    }
    n = 0
    for variant, rows in data.items():
        for seed, ap, fg in rows:
            over = {"variant": variant, "model.variant": variant, "model.E": 16, "model.r": 4}
            _grid_trial(exp, f"{variant}_s{seed}_{n:05d}", over, seed, ap, fg)
            n += 1
    write_report(exp)
    md = (exp / "results.md").read_text()
    # delo: mean 72, s = 2, half-width t(0.975, 2) · 2 / √3 = 4.968
    assert "| DeLo (E=16, r=4) | 72.00 ± 4.97 | 5.00 ± 0.00 | – | 3/3 | 67.42 / 9.41 |" in md
    assert "## Paired differences vs `delo`" in md
    # no_guide - delo per seed: AP -10, -9, -11 (mean -10, s = 1: half 4.3027 / √3 = 2.48, excludes 0);
    # FG +1, +2, +3 (mean 2, s = 1: 2 ± 2.48 contains 0, no marker)
    assert "| no_guide | -10.00 ± 2.48 † (n=3) | – | +2.00 ± 2.48 (n=3) |" in md
    # delo_lora has seeds 0 and 1 only: AP +1, +1 (s = 0, so the interval is the point and excludes 0)
    assert "| delo_lora | +1.00 ± 0.00 † (n=2) | – | +0.00 ± 0.00 (n=2) |" in md
    assert "| delo |" not in md.split("## Paired differences")[1]


def test_components_pair_against_delo_and_against_the_frozen_floor(tmp_path, saved_figures):
    """With a frozen row in the grid the report pairs every row against DeLo (what a component costs) and then
    against the floor (what each row's adaptation adds), in task-agnostic AP, task-aware AP and FG."""
    exp = tmp_path / "components"
    _spec(exp, "components")
    data = {  # variant: overrides, [(seed, AP, task-aware AP, FG)]
        "delo": ({"model.variant": "delo"}, [(1, 60.0, 70.0, 9.0), (2, 62.0, 73.0, 8.0), (3, 61.0, 71.0, 7.0)]),
        "frozen": ({"model.method": "frozen"}, [(1, 50.0, 58.0, 6.0), (2, 51.0, 60.0, 6.0), (3, 52.0, 59.0, 6.0)]),
        "no_guide": ({"model.variant": "no_guide"}, [(1, 55.0, 66.0, 9.0), (2, 57.0, 69.0, 9.0), (3, 56.0, 67.0, 9.0)]),
    }  # fmt: skip
    for n, (variant, (over, rows)) in enumerate(data.items()):
        for seed, ap, aware, fg in rows:
            _grid_trial(
                exp,
                f"{variant}_s{seed}_{n:03d}{seed:02d}",
                {"variant": variant, **over},
                seed,
                ap,
                fg,
                aware=aware,
            )
    write_report(exp)
    md = (exp / "results.md").read_text()
    assert "| Frozen ViLT (floor) | 51.00 ± 2.48 | 6.00 ± 0.00 | 59.00 ± 2.48 | 3/3 | – |" in md
    vs_delo, vs_floor = md.split("## Paired differences vs `delo`")[1].split(
        "## Paired differences vs `frozen`"
    )
    assert "| row | Δ AP | Δ task-aware AP | Δ FG |" in vs_delo
    # no_guide - delo: AP -5, -5, -5; task-aware -4, -4, -4; FG 0, +1, +2 (mean 1, s 1: 1 ± 2.48)
    assert "| no_guide | -5.00 ± 0.00 † (n=3) | -4.00 ± 0.00 † (n=3) | +1.00 ± 2.48 (n=3) |" in vs_delo
    # delo - frozen: AP +10, +11, +9 (mean 10, s 1: ± 2.48 †); task-aware +12, +13, +12 (s 0.577: ± 1.43 †)
    assert "| delo | +10.00 ± 2.48 † (n=3) | +12.33 ± 1.43 † (n=3) | +2.00 ± 2.48 (n=3) |" in vs_floor
    assert "| frozen |" not in vs_floor
    # with task-aware rows the bar chart draws a third series between AP and FG
    saved_figures.clear()  # the figures of the report above
    bars = _figures(write_report(exp), saved_figures)["ap_fg.png"].axes[0]
    from matplotlib.container import BarContainer

    series = [c for c in bars.containers if isinstance(c, BarContainer)]  # not the error bars
    assert [c.get_label() for c in series] == ["AP ↑", "task-aware AP ↑", "FG ↓"]
    ap, aware, fg = ([round(b.get_height(), 2) for b in c] for c in series)
    assert (ap, aware, fg) == ([61.0, 51.0, 56.0], [71.33, 59.0, 67.33], [8.0, 6.0, 9.0])


def test_paired_difference_pairs_by_seed_and_needs_two_pairs():
    from delo.sweep.records import TrialRecord, excludes_zero, paired_difference

    def rec(seed, ap, status="COMPLETED"):
        return TrialRecord(name=f"s{seed}", seed=seed, status=status, last={"final_ap": ap})

    ref = [rec(0, 50.0), rec(1, 52.0), rec(2, 54.0)]
    mine = [rec(2, 60.0), rec(0, 53.0), rec(1, 56.0, status="ERROR")]  # seed 1 did not complete
    mean, half, n = paired_difference(mine, ref, "final_ap", "val")
    # diffs 6 (seed 2), 3 (seed 0): mean 4.5, s = 2.1213, half t(0.975, 1) · s / √2 = 12.706 · 1.5 = 19.06
    assert n == 2 and mean == 4.5 and half == pytest.approx(12.7062047 * 1.5, rel=1e-6)
    assert not excludes_zero(mean, half)
    assert paired_difference(mine[:1], ref, "final_ap", "val") == (6.0, None, 1)
    assert not excludes_zero(6.0, None)


def test_pareto_front_table_and_scatter(tmp_path, saved_figures):
    exp = tmp_path / "pareto"
    _spec(exp, "pareto")
    # (E, r, AP): params 8000 * E, so E=4/60 and E=16/70 trade off, E=16/r=8 at 65 and E=32 at 69 are dominated
    for n, (E, r, ap) in enumerate([(4, 2, 60.0), (16, 4, 70.0), (16, 8, 65.0), (32, 4, 69.0)]):
        _trial(exp, f"E{E}_r{r}_s0_0000{n}", E, r, 0, ap)
    written = write_report(exp)
    paths = {p.name: p for p in written}
    assert set(paths) == {"results.csv", "results.md", "results.tex", "pareto.png", "best_matrix.png"}
    scatter = _figures(written, saved_figures)["pareto.png"].axes[0]  # (trainable parameters, val final AP)
    points = {c.get_label(): c.get_offsets().tolist() for c in scatter.collections}
    assert points == {
        "dominated trial": [[128000.0, 65.0], [256000.0, 69.0]],
        "Pareto front": [[32000.0, 60.0], [128000.0, 70.0]],
    }
    (step,) = scatter.lines
    assert step.get_xydata().tolist() == [[32000.0, 60.0], [128000.0, 70.0]]
    assert [t.get_text() for t in scatter.texts] == ["E=4,r=2", "E=16,r=4"]
    md = (exp / "results.md").read_text()
    section = md.split("## Pareto front")[1].split("## Search")[0]
    assert "| `E4_r2_s0_00000` | 4 | 2 | 32.0k | val | 60.00 | 10.00 | – | – |" in section
    assert "|  |  |  | test | 59.00 | 11.00 | – | – |" in section
    assert "| `E16_r4_s0_00001` | 16 | 4 | 0.13M | val | 70.00 |" in section
    assert "E16_r8" not in section and "E32_r4" not in section


def test_methods_table_has_table_2_columns_and_pairs_against_delo(tmp_path):
    exp = tmp_path / "methods"
    _spec(exp, "methods")
    data = {  # variant: (overrides, [(seed, AP, FG)], params)
        "delo": ({"model.method": "delo"}, [(0, 70.0, 5.0), (1, 72.0, 5.0), (2, 74.0, 5.0)], 1000),
        "mora": ({"model.method": "mora"}, [(0, 66.0, 6.0), (1, 69.0, 6.0), (2, 69.0, 6.0)], 3_000_000),
        "lora": ({"model.variant": "delo_lora"}, [(0, 71.0, 5.0), (1, 73.0, 5.0), (2, 75.0, 5.0)], 500),
    }
    n = 0
    for variant, (over, rows, trainable) in data.items():
        for seed, ap, fg in rows:
            params = {"trainable": trainable, "total": 2_000_000}
            # the runner's task-aware summary: mora's FG 2, 3, 4 over its seeds (DeLo's heads never forget: 0)
            aware = {"task_aware": {"ap": ap + 10, "fg": float(seed + 2) if variant == "mora" else 0.0}}
            _grid_trial(exp, f"{variant}_s{seed}_{n:05d}", {"variant": variant, **over}, seed, ap, fg,
                        seconds=[(10.0, 4.0), (20.0, 6.0)], params=params, run=aware)  # fmt: skip
            n += 1
    write_report(exp)
    md = (exp / "results.md").read_text()
    head = "| Method | AP ↑ | FG ↓ | task-aware AP | task-aware FG | trainable | total | train s / task | eval s / task |"
    assert head + " n | paper AP / FG |" in md
    # delo: 72 ± 4.97 (as in the components test); 1000 trainable -> 1.0k; mean train 15 s, eval 5 s per task;
    # no task-aware AP in Tune's rows here, so "–"; task-aware FG from the runner's result.json
    assert (
        "| DeLo (`delo`) | 72.00 ± 4.97 | 5.00 ± 0.00 | – | 0.00 ± 0.00 | 1.0k | 2.00M | 15.0 | 5.0 | 3/3 | "
        "67.42 / 9.41 |" in md
    )
    # mora's task-aware FG 2, 3, 4: mean 3, s = 1, half-width t(2) / sqrt(3) = 2.48
    assert (
        "| MoRA (`mora`) | 68.00 ± 4.30 | 6.00 ± 0.00 | – | 3.00 ± 2.48 | 3.00M | 2.00M | 15.0 | 5.0 | 3/3 | – |"
        in md
    )
    assert "| DeLo-LoRA (`lora`) |" in md
    # mora - delo per seed: -4, -3, -5 (mean -4, s = 1, half 2.48: excludes 0)
    assert "## Paired differences vs `delo`" in md
    assert "| mora | -4.00 ± 2.48 † (n=3) | – | +1.00 ± 0.00 † (n=3) |" in md
    assert "## Task routing" not in md and "task_routing.png" not in md  # no trial stored routing counts


def test_a_trial_written_with_the_old_oracle_keys_is_summarized(tmp_path):
    """Tune rows written before the task-aware keys were renamed (``*_oracle``) read as today's keys."""
    exp = tmp_path / "methods"
    _spec(exp, "methods")
    for seed, aware in ((0, 80.0), (1, 82.0)):
        name = f"delo_s{seed}_0000{seed}"
        _grid_trial(exp, name, {"variant": "delo", "model.method": "delo"}, seed, 70.0, 5.0)
        rows = [json.loads(line) for line in (exp / name / "result.json").read_text().splitlines()]
        for row in rows:
            row["ap_seen_oracle"] = aware
        rows[-1].update(final_ap_oracle=aware, test_final_ap_oracle=aware - 1)
        (exp / name / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    records = collect(exp)
    assert records[0].last["final_ap_task_aware"] == 80.0 and records[0].last["ap_seen_task_aware"] == 80.0
    assert records[0].last["test_final_ap_task_aware"] == 79.0
    assert not any(k.endswith("_oracle") for r in records for k in r.last)
    write_report(exp)
    # task-aware AP: mean 81, s = √2, half-width t(0.975, 1) · √2 / √2 = 12.71
    assert (
        "| DeLo (`delo`) | 70.00 ± 0.00 | 5.00 ± 0.00 | 81.00 ± 12.71 |" in (exp / "results.md").read_text()
    )
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert [r["final_ap_task_aware"] for r in rows] == ["80.0", "82.0"]


def test_methods_report_shows_the_task_routing_per_method(tmp_path, saved_figures):
    """task_routing.png: one heatmap per method of its seed-summed routing counts, normalised per true task; the
    results.md section gives each diagonal and its mean. Trials without the counts (older result files) are left
    out, and a method without any is absent from both."""
    exp = tmp_path / "methods"
    _spec(exp, "methods")
    data = {  # variant: (overrides, {seed: val routing counts, None for a result.json written before them})
        "delo": ({"model.method": "delo"}, {0: [[8, 2], [1, 9]], 1: [[6, 4], [3, 7]]}),
        "mora": ({"model.method": "mora"}, {0: [[4, 6], [0, 10]], 1: None}),
        "lora": ({"model.variant": "delo_lora"}, {0: None, 1: None}),
    }
    n = 0
    for variant, (over, by_seed) in data.items():
        for seed, counts in by_seed.items():
            run = {"task_routing": counts} if counts else {}
            _grid_trial(
                exp, f"{variant}_s{seed}_{n:05d}", {"variant": variant, **over}, seed, 70.0, 5.0, run=run
            )
            n += 1
    paths = write_report(exp)
    assert {"ap_fg.png", "best_matrix.png", "task_routing.png"} <= {p.name for p in paths}
    md = (exp / "results.md").read_text()
    assert "![task_routing.png](task_routing.png)" in md
    section = md.split("## Task routing")[1].split("##")[0]
    assert "| Method | own task ↑ | T1 | T2 | n |" in section
    # delo: [[8, 2], [1, 9]] + [[6, 4], [3, 7]] = [[14, 6], [4, 16]] -> 70 % and 80 % on the diagonal, mean 75
    assert "| DeLo (`delo`) | 75.00 | 70.00 | 80.00 | 2 |" in section
    # mora: seed 1's result.json has no counts, so seed 0 alone: 40 % and 100 %, mean 70
    assert "| MoRA (`mora`) | 70.00 | 40.00 | 100.00 | 1 |" in section
    assert "DeLo-LoRA" not in section and "(val split)" in section
    figure = _figures(paths, saved_figures)["task_routing.png"]
    heatmaps = [ax for ax in figure.axes if ax.images]  # the colour bar's axes holds no image
    assert [ax.get_title() for ax in heatmaps] == ["DeLo (n=2)", "MoRA (n=1)"]
    cells = [ax.images[0].get_array().astype(float).filled(math.nan).tolist() for ax in heatmaps]
    assert cells == [[[70.0, 30.0], [20.0, 80.0]], [[40.0, 60.0], [0.0, 100.0]]]
    assert [[t.get_text() for t in ax.texts] for ax in heatmaps] == [
        ["70.0", "30.0", "20.0", "80.0"],
        ["40.0", "60.0", "0.0", "100.0"],
    ]
    assert [heatmaps[0].get_xlabel(), heatmaps[0].get_ylabel()] == ["inferred task", "true task"]
    assert heatmaps[0].images[0].get_clim() == (0, 100)
    title = figure.get_suptitle()
    assert "(val split)" in title and "counts summed over each panel's n trials (seeds 0, 1)" in title


def test_pooled_routing_reads_the_split_and_skips_trials_without_it():
    from delo.sweep.records import TrialRecord, pooled_routing

    def rec(routing, status="COMPLETED"):
        return TrialRecord(name="t", status=status, routing=routing)

    recs = [
        rec({"val": [[1, 0], [0, 1]], "test": [[2, 1], [0, 3]]}),
        rec({"val": [[3, 1], [1, 3]]}),  # no test counts
        rec({}),  # a result.json written before routing counts
        rec({"val": [[9, 9], [9, 9]]}, status="ERROR"),  # not completed
    ]
    assert pooled_routing(recs, "val") == ([[4, 1], [1, 4]], 2)
    assert pooled_routing(recs, "test") == ([[2, 1], [0, 3]], 1)
    assert pooled_routing(recs[2:], "val") == (None, 0)
