"""The trainable and the launcher's refusals, without a Ray cluster (fake report/context/checkpoint, the shared
fake runner)."""

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from ray import tune as ray_tune

from delo.config import ConfigError
from delo.folderlock import LOCK_FILE
from delo.sweep.driver import launch, start_ray, write_hparams_config
from delo.sweep.experiment import RUNNER_CHECKPOINTS, save_spec
from delo.sweep.grid import TRIAL_KEY
from delo.sweep.spec import load_sweep
from delo.sweep.trainable import run_trial

ROOT = Path(__file__).resolve().parents[2]


class FakeContext:
    def __init__(self, trial_dir):
        self.trial_dir = trial_dir

    def get_trial_dir(self):
        return str(self.trial_dir)

    def get_trial_id(self):
        return "abc_00000"


@pytest.fixture
def fake_tune(monkeypatch, tmp_path):
    reports = []
    box = {"checkpoint": None, "n": 0}
    staging = tmp_path / "staging" / "E16-r2_s0_abc_00000"  # what get_trial_dir() returns
    staging.mkdir(parents=True)
    trial_dir = tmp_path / "exp" / staging.name  # where the trial writes (storage)
    stored = tmp_path / "stored"

    def report(metrics, *, checkpoint=None):
        # Tune persists the checkpoint folder at report time: copy it as storage would.
        dest = stored / f"checkpoint_{box['n']:06d}"
        box["n"] += 1
        shutil.copytree(checkpoint.path, dest)
        reports.append((metrics, dest))

    monkeypatch.setattr(ray_tune, "report", report)
    monkeypatch.setattr(ray_tune, "get_context", lambda: FakeContext(staging))
    monkeypatch.setattr(ray_tune, "get_checkpoint", lambda: box["checkpoint"])
    return reports, box, trial_dir


def _grid_config(sweep):
    return {TRIAL_KEY: sweep.trials[0].to_tune()}


def test_trial_reports_each_task_with_checkpoint(fake_tune, fakes):
    reports, _, trial_dir = fake_tune
    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml", ["data.num_tasks=3"])
    run_trial(
        _grid_config(sweep),
        base=sweep.base,
        exp_dir=str(trial_dir.parent),
        resources={"cpu": 1},
        run_fn=fakes.fake_run,
    )
    assert [m["task"] for m, _ in reports] == [1, 2, 3]
    assert all("ap_seen" in m for m, _ in reports)
    assert ["final_ap" in m for m, _ in reports] == [False, False, True]
    info = json.loads((trial_dir / "trial.json").read_text())
    assert info["label"] == "E=16,r=2" and info["seed"] == 0 and info["config"]["model"]["r"] == 2
    assert info["out_dir"] == trial_dir.name
    assert json.loads((reports[-1][1] / "state.json").read_text()) == {"next_task": 3, "runs": 1}


def test_trial_resumes_from_tune_checkpoint(fake_tune, fakes):
    reports, box, trial_dir = fake_tune
    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml", ["data.num_tasks=3"])
    config = _grid_config(sweep)
    run_trial(
        config, base=sweep.base, exp_dir=str(trial_dir.parent), resources={"cpu": 1}, run_fn=fakes.fake_run
    )
    # Retry after task 1: Tune hands back the task-1 checkpoint; stale runner files must not win.
    box["checkpoint"] = ray_tune.Checkpoint.from_directory(str(reports[0][1]))
    reports.clear()
    run_trial(
        config, base=sweep.base, exp_dir=str(trial_dir.parent), resources={"cpu": 1}, run_fn=fakes.fake_run
    )
    assert [m["task"] for m, _ in reports] == [2, 3]


def test_damaged_tune_checkpoint_falls_back_to_the_older_one(tmp_path, capsys):
    """Tune keeps two checkpoints per trial; when the newest one's state.pt is garbage the trial continues from
    the older one (one warning line) instead of failing the same way on every retry."""
    from delo import checkpoint as ck
    from delo.sweep.trainable import _restore_checkpoint

    trial = tmp_path / "trial"
    for n in (1, 2):
        ck.save_task(trial / f"checkpoint_00000{n}", n - 1, {"x": torch.ones(1)})
        ck.save_state(trial / f"checkpoint_00000{n}", {**dict.fromkeys(ck.STATE_KEYS, 0), "next_task": n})
    (trial / "checkpoint_000002" / "state.pt").write_bytes(b"garbage")
    out = tmp_path / "out"
    _restore_checkpoint(ray_tune.Checkpoint.from_directory(str(trial / "checkpoint_000002")), out)
    assert ck.load_state(out / RUNNER_CHECKPOINTS)["next_task"] == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"warning: {trial / 'checkpoint_000002' / 'state.pt'}: damaged (not a readable checkpoint: UnpicklingError: "
        f"WeightsUnpickler error: Unsupported operand 103); continuing from the older checkpoint "
        f"{trial / 'checkpoint_000001'}"
    )
    # no good older one: the damaged state stays, and the runner refuses it with its own message
    (trial / "checkpoint_000001" / "state.pt").write_bytes(b"")
    _restore_checkpoint(ray_tune.Checkpoint.from_directory(str(trial / "checkpoint_000002")), out)
    assert (out / RUNNER_CHECKPOINTS / "state.pt").read_bytes() == b"garbage"


def test_report_without_metric_is_an_error(fake_tune, tmp_path):
    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml", ["data.num_tasks=2"])

    def bad_run(cfg, out_dir, on_task_end):
        on_task_end({"task": 1, "acc": 1.0}, Path(out_dir))

    with pytest.raises(KeyError, match="ap_seen"):
        run_trial(
            _grid_config(sweep), base=sweep.base, exp_dir=str(tmp_path), resources={"cpu": 1}, run_fn=bad_run
        )


def test_launch_bad_spec_exits_2_and_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ngrid: {axes: {model.nope: [1]}}\n")
    assert launch(spec, storage=str(tmp_path / "out")) == 2
    assert "model.nope: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_launch_refuses_existing_experiment_without_resume(tmp_path, capsys):
    sweep = load_sweep(ROOT / "sweeps/smoke.yaml", storage=tmp_path)
    save_spec(sweep)
    before = sorted(p.name for p in sweep.experiment_dir.iterdir())
    assert launch(ROOT / "sweeps/smoke.yaml", storage=str(tmp_path)) == 2
    assert "Pass --resume" in capsys.readouterr().err
    # only the folder's lock file (delo.folderlock), left empty on release, is new
    assert sorted(p.name for p in sweep.experiment_dir.iterdir()) == sorted([*before, LOCK_FILE])
    assert (sweep.experiment_dir / LOCK_FILE).read_text() == ""


def test_launch_resume_of_changed_spec_exits_2_with_diff(tmp_path, capsys):
    save_spec(load_sweep(ROOT / "sweeps/smoke.yaml", storage=tmp_path))
    code = launch(ROOT / "sweeps/smoke.yaml", ["grid.seeds=[0,1]"], storage=str(tmp_path), resume=True)
    err = capsys.readouterr().err
    assert code == 2 and "--resume refused" in err and "+    - 1" in err


def test_launch_resume_without_saved_spec_exits_2(tmp_path, capsys):
    assert launch(ROOT / "sweeps/smoke.yaml", storage=str(tmp_path), resume=True) == 2
    assert "no saved spec" in capsys.readouterr().err


def test_dry_run_prints_trials(capsys, tmp_path):
    assert launch(ROOT / "sweeps/rank_factor.yaml", dry_run=True, storage=str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "grid: 18 trials" in out and out.count(" seed=") == 18
    assert not (tmp_path / "rank_factor").exists()


def test_busy_dashboard_port_is_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is busy"):
            start_ray(None, port, 1)


def test_hparams_config_lists_every_hparam_and_metric(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    sweep = load_sweep(ROOT / "sweeps/rank_factor.yaml", storage=tmp_path)
    sweep.experiment_dir.mkdir(parents=True)
    write_hparams_config(sweep)
    write_hparams_config(sweep)  # second call (resume) writes nothing
    assert len(list(sweep.experiment_dir.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(sweep.experiment_dir))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    exp = metadata.parse_experiment_plugin_data(content)
    names = {h.name: h for h in exp.hparam_infos}
    assert {"model.E", "model.r", "seed", "loss.lambda1", "data.missing.eta"} <= set(names)
    assert [v.number_value for v in names["model.E"].domain_discrete.values] == [16, 32]
    tags = {m.name.tag for m in exp.metric_infos}
    assert {"val/final_ap", "val/ap_seen", "test/final_ap"} <= tags


def test_runner_checkpoint_folder_name_matches():
    from delo.checkpoint import CHECKPOINT_DIRNAME

    assert RUNNER_CHECKPOINTS == CHECKPOINT_DIRNAME


def test_trial_actor_repr_is_the_trial_folder(tmp_path):
    """Ray shows an actor's repr as its name on the dashboard: the trial folder, not 'run_trial'."""
    from types import SimpleNamespace

    from delo.sweep.trainable import make_trainable

    cls = make_trainable({}, tmp_path, {"cpu": 1, "gpu": 0})
    actor = object.__new__(cls)  # no Tune session here; only what __repr__ reads
    actor._storage = SimpleNamespace(trial_dir_name="E16-r4_s0_abcde_00003")
    assert repr(actor) == "E16-r4_s0_abcde_00003"
    assert cls.default_resource_request({}).required_resources == {"CPU": 1.0}
