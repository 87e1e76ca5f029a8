"""launch/tuned.py: the final methods spec takes each row's best val configuration from its method's finished
search, keeps the row's own keys, and refuses an unfinished or missing search before writing anything."""

import json
from pathlib import Path

import yaml

from delo.cli import tuned
from delo.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "sweeps" / "profiles" / "synthetic.yaml"


def _search(root: Path, name: str, method: str | None, trials: list[tuple[dict, float | None, str]], n: int):
    """A search folder: each trial (overrides, val final AP or None, status) as the driver writes it."""
    exp = root / name
    exp.mkdir(parents=True)
    config = {"model.method": method} if method else {}
    (exp / "sweep_spec.yaml").write_text(
        yaml.safe_dump(
            {
                "base": {"model": {"method": method or "delo"}},
                "spec": {"name": name, "base": {"config": config}, "search": {"num_samples": n}},
            }
        )
    )
    status = {}
    for i, (overrides, ap, state) in enumerate(trials):
        d = exp / f"t{i}_s0_0000{i}"
        d.mkdir()
        config = {"model": {"method": method or "delo"}}  # the trial's resolved run config (a part of it)
        info = {"trial_id": f"0000{i}", "seed": 0, "overrides": {**overrides, "seed": 0}, "config": config}
        (d / "trial.json").write_text(json.dumps(info))
        rows = [{"task": 1, "ap_seen": 40.0}, {"task": 2, "ap_seen": 90.0 if ap is None else 30.0}]
        if ap is not None:
            rows[-1]["final_ap"] = ap
        (d / "result.json").write_text("\n".join(json.dumps(r) for r in rows))
        status[d.name] = {"status": state}
    (exp / "trial_status.yaml").write_text(json.dumps({"total_trials": n, "trials": status}))


def _methods_spec(tmp_path: Path) -> Path:
    spec = {
        "name": "methods",
        "table": "methods",
        "base": {"file": str(PROFILE)},
        "grid": {
            "variants": {
                "delo": {},
                "delo_lora": {"model.variant": "delo_lora"},
                "rank1_pool": {"model.method": "rank1_pool"},
                "rank1_pool_tkm": {"model.method": "rank1_pool", "model.rank1_pool.task_inference": "tkm"},
            },
            "seeds": [0],
        },
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent": 2,
    }
    path = tmp_path / "methods.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _finished_searches(root: Path) -> None:
    _search(
        root,
        "search",
        None,
        [
            ({"model.E": 16, "model.r": 4, "train.lr": 5e-3}, 30.0, "COMPLETED"),
            ({"model.E": 8, "model.r": 2, "train.lr": 1e-2}, 35.5, "COMPLETED"),
            ({"model.E": 4, "model.r": 1, "train.lr": 1e-4}, None, "STOPPED"),  # best ap_seen, but stopped
        ],
        n=3,
    )
    _search(
        root,
        "search_rank1_pool",
        "rank1_pool",
        [
            ({"model.rank1_pool.E": 12, "train.lr": 2e-3}, 41.0, "COMPLETED"),
            ({"model.rank1_pool.E": 24, "train.lr": 3e-4}, None, "ERROR"),
        ],
        n=2,
    )


def test_rows_take_the_best_completed_trial_and_keep_their_own_keys(tmp_path, capsys):
    root = tmp_path / "sweep_results"
    _finished_searches(root)
    out = tmp_path / "methods_tuned.yaml"
    assert tuned([str(_methods_spec(tmp_path)), "--searches", str(root), "--out", str(out)]) == 0

    raw = yaml.safe_load(out.read_text())
    assert raw["grid"]["seeds"] == [1, 2, 3, 4, 5]
    assert raw["grid"]["variants"] == {
        "delo": {"model.E": 8, "model.r": 2, "train.lr": 1e-2},
        "delo_lora": {"model.E": 8, "model.r": 2, "train.lr": 1e-2, "model.variant": "delo_lora"},
        "rank1_pool": {"model.rank1_pool.E": 12, "train.lr": 2e-3, "model.method": "rank1_pool"},
        "rank1_pool_tkm": {
            "model.rank1_pool.E": 12,
            "train.lr": 2e-3,
            "model.method": "rank1_pool",
            "model.rank1_pool.task_inference": "tkm",
        },
    }
    text = out.read_text()
    assert "# search/t1_s0_00001: val final AP 35.50" in text
    assert "# search_rank1_pool/t0_s0_00000: val final AP 41.00" in text

    # the written spec is a valid sweep: 4 rows x 5 seeds, each trial's config carries its row's tuned keys
    sweep = load_sweep(out, cwd=tmp_path)
    assert len(sweep.trials) == 20
    by_variant = {(t.variant, t.seed): t for t in sweep.trials}
    assert by_variant[("delo_lora", 3)].overrides["model.r"] == 2
    assert by_variant[("rank1_pool_tkm", 1)].overrides["train.lr"] == 2e-3


def test_an_unfinished_or_missing_search_is_refused_before_anything_is_written(tmp_path, capsys):
    root = tmp_path / "sweep_results"
    _search(root, "search", None, [({"model.E": 16, "train.lr": 5e-3}, 30.0, "COMPLETED")], n=20)
    out = tmp_path / "methods_tuned.yaml"
    out.write_text("keep me\n")
    assert tuned([str(_methods_spec(tmp_path)), "--searches", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{root / 'search'}: 1 of 20 trials ended" in err
    assert "sweeps/search.yaml --resume" in err
    assert f"{root / 'search_rank1_pool'}: no search folder" in err
    assert out.read_text() == "keep me\n"


def test_seeds_the_searches_used_are_refused(tmp_path, capsys):
    root = tmp_path / "sweep_results"
    _finished_searches(root)
    assert tuned([str(_methods_spec(tmp_path)), "--searches", str(root), "--seeds", "0,1,2"]) == 2
    assert "--seeds '0,1,2'" in capsys.readouterr().err
