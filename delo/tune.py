"""Ray Tune adapter: the only module that imports Ray (ray-tune.md has the facts this follows).

- :func:`run_trial` is the trainable. It builds the trial's typed RunConfig (base + variant/axes/seed, or the
  searcher's suggestion), restores Tune's checkpoint into ``<trial_dir>/run/checkpoints`` and calls
  ``run_continual`` with an ``on_task_end`` that sends one ``tune.report`` + checkpoint per task.
- :class:`PrunedAwareOptunaSearch` tells Optuna PRUNED for trials ASHA stopped before task T.
- :func:`build_tuner` / :func:`restore_tuner` make the grid Tuner (BasicVariantGenerator, no scheduler) or the
  search Tuner (Optuna TPE + ASHA on ``task``), with a fixed experiment name for --resume.
- :class:`SweepProgress` is the live progress view and keeps ``trial_status.yaml`` up to date.
- :func:`launch` is what ``launch/sweep.py`` calls.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from delo.atomic import atomic_write_text
from delo.config import ConfigError, RunConfig
from delo.report import error_reason, write_report
from delo.sweep import (
    TUNE_METRIC,
    Sweep,
    asha_reduction_factor,
    check_resumable,
    grid_param_space,
    has_experiment,
    load_sweep,
    optuna_name,
    save_spec,
    trial_dirname,
    trial_label,
    trial_overrides,
    trial_run_config,
)

TRIAL_INFO = "trial.json"
RUNNER_CHECKPOINTS = "checkpoints"
"""= delo.checkpoint.CHECKPOINT_DIRNAME (not imported: that module loads torch, 2 s per trial process)."""
STATUS_FILE = "trial_status.yaml"
"""Not .json: Tune copies the experiment root's .json/.pkl files into its staging folder on restore and syncs
them back up periodically, which would overwrite a fresher file with the old one."""
RunFn = Callable[[RunConfig, Path, Callable[[dict, Path], None]], dict]


# ----------------------------------------------------------------------------------------------------------
# Trainable


def run_trial(
    config: dict[str, Any],
    *,
    base: dict[str, Any],
    exp_dir: str,
    resources: dict[str, float],
    run_fn: RunFn | None = None,
) -> None:
    """One trial: typed config, compute limits, checkpoint restore, then the continual run, reporting per task."""
    # get_trial_dir() is the driver-node staging folder (ray/train/_internal/storage.py), which the driver
    # syncs to storage in the background: a file replaced during that copy fails the sync. Trials therefore
    # write straight into their folder in the (shared) storage, next to Tune's own files.
    trial_dir = Path(exp_dir) / Path(tune.get_context().get_trial_dir()).name
    # The runner's folder carries the trial folder's name: the runner names its TensorBoard hparams session
    # group after it, and Tune's result.json in the trial folder stays separate from the runner's.
    out_dir = trial_dir / trial_dir.name
    cfg = trial_run_config(base, config)
    _limit_compute(resources)
    _restore_checkpoint(tune.get_checkpoint(), out_dir)
    info = _trial_info(config, cfg, tune.get_context().get_trial_id())
    _write_json(trial_dir / TRIAL_INFO, {**info, "out_dir": out_dir.name})
    if run_fn is None:
        from delo.train import run_continual as run_fn

    def on_task_end(metrics: dict[str, Any], ckpt_dir: Path) -> None:
        if TUNE_METRIC not in metrics or "task" not in metrics:
            raise KeyError(f"the runner's report lacks 'task' or '{TUNE_METRIC}' (keys: {sorted(metrics)})")
        tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))

    run_fn(cfg, out_dir, on_task_end)


def _trial_info(config: dict[str, Any], cfg: RunConfig, trial_id: str) -> dict[str, Any]:
    return {
        "trial_id": trial_id,
        "label": trial_label(config),
        "variant": config["variant"]["name"] if "variant" in config else None,
        "seed": cfg.seed,
        "overrides": trial_overrides(config),
        "search": {k: v for k, v in config.items() if k not in ("variant", "axes")} if "variant" not in config else {},
        "config_hash": cfg.hash(),
        "config": cfg.to_dict(),
    }


def _limit_compute(resources: dict[str, float]) -> None:
    """Threads = the trial's CPUs (OMP_NUM_THREADS, which the runner's ``runtime.set_threads`` reads, and torch's
    own setting when it is loaded); with a GPU fraction, cap this process's share of the GPU's memory."""
    threads = max(1, int(resources.get("cpu", 1)))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    gpu = float(resources.get("gpu", 0))
    if 0 < gpu < 1:
        import torch

        if torch.cuda.is_available():  # Ray sets CUDA_VISIBLE_DEVICES but does not isolate memory
            torch.cuda.set_per_process_memory_fraction(gpu, 0)


def _restore_checkpoint(checkpoint: tune.Checkpoint | None, out_dir: Path) -> None:
    """Tune's last checkpoint is the truth: it replaces the runner's checkpoint folder (none: start clean)."""
    target = out_dir / RUNNER_CHECKPOINTS
    if target.exists():
        shutil.rmtree(target)
    if checkpoint is not None:
        checkpoint.to_directory(str(target))


def make_trainable(sweep: Sweep, run_fn: RunFn | None = None):
    """The trainable with the base config bound (object store) and the spec's resources per trial."""
    res = {"cpu": sweep.spec.resources.cpu, "gpu": sweep.spec.resources.gpu}
    fn = tune.with_parameters(run_trial, base=sweep.base, exp_dir=str(sweep.experiment_dir), resources=res,
                              run_fn=run_fn)
    return tune.with_resources(fn, res)


# ----------------------------------------------------------------------------------------------------------
# Searcher


class PrunedAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells PRUNED, not COMPLETE, for a trial ASHA stopped early.

    On an ASHA stop Tune calls ``on_trial_complete`` with the last partial result; the stock class would tell
    COMPLETE with that (often higher, early) ``ap_seen`` and TPE could prefer a stopped trial. Rule: no error and
    ``result["task"] < num_tasks`` -> PRUNED; an error -> FAIL; otherwise COMPLETE with ``objective`` (e.g.
    ``final_ap``) as the told value when it differs from the per-report metric.
    """

    def __init__(self, *args, num_tasks: int, objective: str = TUNE_METRIC, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_tasks = num_tasks
        self.objective = objective

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:  # FAIL even when a partial result comes along (the parent would tell COMPLETE with it)
            result = None
        elif result and result.get("task") is not None and result["task"] < self.num_tasks:
            if trial_id in self._completed_trials:
                return
            from optuna.trial import TrialState

            self._ot_study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        elif result and self.objective != self.metric and self.objective in result:
            result = {**result, self.metric: result[self.objective]}
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(sweep: Sweep) -> PrunedAwareOptunaSearch:
    s = sweep.spec.search
    points = [sweep.space.to_optuna_point(p) for p in s.points_to_evaluate]
    return PrunedAwareOptunaSearch(
        space=sweep.space,
        metric=TUNE_METRIC,
        mode=s.mode,
        points_to_evaluate=points or None,
        seed=s.searcher.seed,
        num_tasks=sweep.num_tasks,
        objective=s.metric,
    )


def make_scheduler(sweep: Sweep) -> ASHAScheduler | None:
    s = sweep.spec.search.scheduler
    if s.type == "none":
        return None
    return ASHAScheduler(
        time_attr="task",
        max_t=sweep.num_tasks,
        grace_period=s.grace_period,
        reduction_factor=asha_reduction_factor(sweep.num_tasks, s.reduction_factor),
        brackets=1,
    )


# ----------------------------------------------------------------------------------------------------------
# Tuner


def _dirname(trial: Trial) -> str:
    return trial_dirname(trial.config, trial.trial_id)


def param_space(sweep: Sweep) -> dict[str, Any]:
    """Grid: variants, axes and seeds as grid_search; search: constants only (the seed)."""
    if sweep.spec.grid is None:
        return {"seed": sweep.base_config.seed}
    plain = grid_param_space(sweep)
    return {
        "variant": tune.grid_search(plain["variant"]),
        "axes": {name: tune.grid_search(points) for name, points in plain["axes"].items()},
        "seed": tune.grid_search(plain["seed"]),
    }


def build_tuner(sweep: Sweep, run_fn: RunFn | None = None, progress_interval_s: float = 20.0) -> tune.Tuner:
    spec = sweep.spec
    common = {"max_concurrent_trials": spec.max_concurrent, "trial_dirname_creator": _dirname}
    if spec.grid is not None:
        tune_config = tune.TuneConfig(num_samples=1, **common)
    else:
        tune_config = tune.TuneConfig(
            metric=TUNE_METRIC,
            mode=spec.search.mode,
            search_alg=make_searcher(sweep),
            scheduler=make_scheduler(sweep),
            num_samples=spec.search.num_samples,
            **common,
        )
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=str(sweep.storage),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
        callbacks=[
            CSVLoggerCallback(),
            JsonLoggerCallback(),
            SweepProgress(
                spec.name, str(sweep.experiment_dir), sweep.num_tasks, total_trials(sweep), progress_interval_s
            ),
        ],
        verbose=0,
    )
    return tune.Tuner(
        make_trainable(sweep, run_fn), param_space=param_space(sweep), tune_config=tune_config, run_config=run_config
    )


def can_restore(path: Path) -> bool:
    """Tuner.can_restore only checks tuner.pkl (written at construction); the state file proves a started run."""
    return tune.Tuner.can_restore(str(path)) and bool(list(Path(path).glob("experiment_state-*.json")))


def restore_tuner(sweep: Sweep, run_fn: RunFn | None = None) -> tune.Tuner:
    """Continue the experiment: unfinished and errored trials resume from their last checkpoints; finished ones
    are kept as they are. The searcher (Optuna study) and scheduler state come back from the experiment."""
    tuner = tune.Tuner.restore(
        str(sweep.experiment_dir), make_trainable(sweep, run_fn), resume_unfinished=True, resume_errored=True
    )
    # The progress callback comes back unpickled with the folder it was created for; the experiment may have
    # been moved since (resumed with another --storage).
    run_config = tuner._local_tuner.get_run_config() if hasattr(tuner, "_local_tuner") else None
    for callback in (run_config.callbacks or []) if run_config else []:
        if isinstance(callback, SweepProgress):
            callback.exp_dir = str(sweep.experiment_dir)
    return tuner


# ----------------------------------------------------------------------------------------------------------
# Progress view


class SweepProgress(tune.Callback):
    """Readable live progress: one line per trial start/finish/error and a periodic summary, best final_ap
    so far; keeps ``trial_status.yaml`` (status, task, final metrics, error reason per trial folder).

    Stateless across restores (Tune pickles callbacks into the experiment): everything is recomputed from the
    ``trials`` list Tune passes in.
    """

    def __init__(self, name: str, exp_dir: str, num_tasks: int, total: int, interval_s: float = 20.0):
        self.name = name
        self.exp_dir = exp_dir
        self.num_tasks = num_tasks
        self.total = total  # trials the sweep will run (Tune's generators create them lazily)
        self.interval_s = interval_s
        self.setup()

    def setup(self, **info) -> None:
        self._start = time.time()
        self._last_print = 0.0
        self._last_written = ""
        self._live: dict[str, str] = {}  # trial folder -> Tune status at the last step

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._say(f"start  {_trial_name(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        if "final_ap" in last:
            extra = f"final_ap={last['final_ap']:.2f} final_fg={last.get('final_fg', float('nan')):.2f}"
            if "test_final_ap" in last:
                extra += f" test_final_ap={last['test_final_ap']:.2f}"
        else:
            extra = f"stopped after task {last.get('task', '?')}/{self.num_tasks} (ap_seen={last.get('ap_seen', float('nan')):.2f})"
        self._say(f"done   {_trial_name(trial)} {extra}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._say(f"ERROR  {_trial_name(trial)}: {error_reason(trial.error_file)}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._say(f"retry  {_trial_name(trial)} (failure {trial.num_failures}): {error_reason(trial.error_file)}")

    def on_step_end(self, iteration, trials, **info) -> None:
        self._write(self._snapshot(trials))
        self._live = {_trial_name(t): t.status for t in trials}
        if time.time() - self._last_print >= self.interval_s:
            self._say(self._summary(trials))

    def on_experiment_end(self, trials, **info) -> None:
        # An interrupt (SIGINT) ends the loop and Tune then marks running trials TERMINATED; they were live at
        # the last step and have no final_ap: they are INTERRUPTED (restored as pending by --resume).
        snapshot = self._snapshot(trials)
        for name, entry in snapshot.items():
            if entry["status"] == "STOPPED" and self._live.get(name) in (Trial.RUNNING, Trial.PENDING, Trial.PAUSED):
                entry["status"] = "INTERRUPTED"
        self._write(snapshot)
        self._say(self._summary(trials))

    def _write(self, snapshot: dict[str, Any]) -> None:
        data = {"total_trials": self.total, "trials": snapshot}
        text = json.dumps(data, sort_keys=True, default=str)
        if text != self._last_written:
            self._last_written = text
            _write_yaml(Path(self.exp_dir) / STATUS_FILE, data)

    def _snapshot(self, trials) -> dict[str, Any]:
        out = {}
        for t in trials:
            last = t.last_result or {}
            status = t.status
            if status == Trial.TERMINATED:
                status = "COMPLETED" if "final_ap" in last else "STOPPED"
            out[_trial_name(t)] = {
                "trial_id": t.trial_id,
                "status": status,
                "task": last.get("task"),
                "final_ap": last.get("final_ap"),
                "num_failures": t.num_failures,
                "error": error_reason(t.error_file) if t.status == Trial.ERROR else None,
            }
        return out

    def _summary(self, trials) -> str:
        self._last_print = time.time()
        count = {s: 0 for s in (Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR)}
        best, best_name = None, ""
        running = []
        for t in trials:
            count[t.status] = count.get(t.status, 0) + 1
            last = t.last_result or {}
            if t.status == Trial.RUNNING:
                running.append(f"{_trial_name(t)}@{last.get('task', 0)}/{self.num_tasks}")
            if "final_ap" in last and (best is None or last["final_ap"] > best):
                best, best_name = last["final_ap"], _trial_name(t)
        elapsed = time.time() - self._start
        best_text = f"best final_ap {best:.2f} ({best_name})" if best is not None else "best final_ap -"
        line = (
            f"{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d} running {count[Trial.RUNNING]} | "
            f"done {count[Trial.TERMINATED]}/{len(trials)} | errored {count[Trial.ERROR]} | "
            f"pending {count[Trial.PENDING] + count[Trial.PAUSED]} | {best_text}"
        )
        return line + (f"\n        running: {', '.join(running)}" if running else "")

    def _say(self, text: str) -> None:
        print(f"[sweep {self.name}] {text}", flush=True)


def _trial_name(trial: Trial) -> str:
    path = trial.local_path or trial.path
    return Path(path).name if path else str(trial)


def _write_yaml(path: Path, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=True))


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str))


# ----------------------------------------------------------------------------------------------------------
# Driver


def prepare_inputs(sweep: Sweep) -> None:
    """Driver: build every distinct data setting (synthetic set, missing tables) and check each backbone."""
    from delo.backbone import check_backbone_available
    from delo.data import prepare_data

    configs = [sweep.base_config]
    if sweep.spec.grid is not None:
        configs = [trial_run_config(sweep.base, _grid_config(t)) for t in sweep.trials]
    seen_data, seen_backbones = set(), set()
    for cfg in configs:
        key = json.dumps({"data": cfg.to_dict()["data"], "backbone": cfg.model.backbone}, sort_keys=True)
        if key not in seen_data:
            seen_data.add(key)
            prepare_data(cfg)
        if cfg.model.backbone not in seen_backbones:
            seen_backbones.add(cfg.model.backbone)
            check_backbone_available(cfg.model.backbone)


def _grid_config(trial) -> dict[str, Any]:
    return {"variant": {"name": trial.variant, "set": trial.overrides}, "axes": {}}


def write_hparams_config(sweep: Sweep) -> None:
    """The experiment-level TensorBoard hparams config (once): every hyperparameter with its domain + metrics."""
    from delo.tblog import flatten_hparams, metric_tags
    from delo.tblog import write_hparams_config as write

    exp = sweep.experiment_dir
    if list(exp.glob("events.out.tfevents.*")):
        return
    domains: dict[str, Any] = {name: None for name in flatten_hparams(sweep.base_config.to_dict())}
    if sweep.spec.grid is not None:
        varied: dict[str, list] = {}
        for t in sweep.trials:
            for key, value in t.overrides.items():
                flat = flatten_hparams({key: value})[key]
                if flat not in varied.setdefault(key, []):
                    varied[key].append(flat)
        for key, values in varied.items():
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                values = [float(v) for v in values] if any(isinstance(v, float) for v in values) else values
            domains[key] = sorted(values) if len(values) > 1 else None
    else:
        domains.update(sweep.space.hparam_domains())
    write(exp, domains, metric_tags(test=sweep.base_config.eval.test))


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start_ray(address: str | None, dashboard_port: int, num_cpus: int | None) -> str:
    """Join ``address`` or start a local Ray (dashboard on 127.0.0.1 unless the port is 0); returns its text."""
    if address:
        ctx = ray.init(address=address, log_to_driver=False)
        return f"joined Ray cluster at {address} (dashboard: {ctx.dashboard_url or 'not running'})"
    if dashboard_port and _port_busy(dashboard_port):
        raise ConfigError(
            f"port {dashboard_port} on 127.0.0.1 is busy (another Ray dashboard, i.e. a running Ray cluster, or "
            f"another service). Join that cluster with --address auto, stop it with `ray stop`, or pick another "
            f"port with --dashboard-port (0: no dashboard)."
        )
    ctx = ray.init(
        num_cpus=num_cpus,
        include_dashboard=bool(dashboard_port),
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port or None,
        log_to_driver=False,
    )
    lines = [f"started a local Ray ({ctx.address_info.get('gcs_address', '')}); trial logs under {ctx.address_info.get('session_dir', '/tmp/ray')}/logs"]
    if dashboard_port:
        lines.append(f"dashboard: http://{ctx.dashboard_url}  (only on 127.0.0.1; remote: ssh -L {dashboard_port}:127.0.0.1:{dashboard_port} host)")
        if os.environ.get("RAY_AUTH_MODE", "token") != "disabled":
            lines.append(
                "  token auth is on: the page asks for the token in ~/.ray/auth_token "
                "(CLI/curl: header 'Authorization: Bearer <token>'; ray CLI reads the file itself)"
            )
        else:
            lines.append("  auth disabled (RAY_AUTH_MODE=disabled)")
    return "\n".join(lines)


def launch(
    spec: str | Path,
    sets: list[str] | tuple[str, ...] = (),
    *,
    profile: str | None = None,
    address: str | None = None,
    resume: bool = False,
    dry_run: bool = False,
    storage: str | None = None,
    dashboard_port: int = 8265,
    num_cpus: int | None = None,
    run_fn: RunFn | None = None,
    check_inputs: bool = True,
    progress_interval_s: float = 20.0,
) -> int:
    """Run (or resume, or dry-run) a sweep. Returns the exit status: 0 ok, 1 trials failed, 2 bad input,
    130 interrupted (resume with --resume).

    ``run_fn`` replaces ``delo.train.run_continual`` in the trials and ``check_inputs=False`` skips the driver's
    data preparation and backbone check (both for tests of the Tune mechanics with a fake runner).
    """
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    try:
        sweep = load_sweep(spec, sets, profile=profile, storage=storage)
        if dry_run:
            print(dry_run_text(sweep))
            return 0
        exp = sweep.experiment_dir
        if resume:
            check_resumable(sweep)
        elif has_experiment(sweep):
            raise ConfigError(
                f"{exp} already holds a sweep named {sweep.name!r}. Pass --resume to continue it, or choose "
                "another --storage (or spec name) to start a new one; nothing was changed."
            )
        if check_inputs:
            prepare_inputs(sweep)
        print(start_ray(address, dashboard_port, num_cpus), flush=True)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        restoring = resume and can_restore(exp)
        if resume and not restoring:
            print(f"{exp}: no Tune state yet (interrupted before the first snapshot); starting the sweep afresh")
        if not restoring:
            save_spec(sweep)
            write_hparams_config(sweep)
        print(f"sweep {sweep.name}: {_size_text(sweep)} -> {exp}")
        print(f"TensorBoard: tensorboard --logdir {exp} --host 127.0.0.1 --port 6006"
              + (" --reload_multifile=true" if restoring else ""), flush=True)
        tuner = restore_tuner(sweep, run_fn) if restoring else build_tuner(sweep, run_fn, progress_interval_s)
        tuner.fit()
    finally:
        ray.shutdown()
    return finish(sweep)


def finish(sweep: Sweep) -> int:
    """Write the report and turn the trial statuses into an exit status."""
    exp = sweep.experiment_dir
    paths = write_report(exp)
    status = yaml.safe_load((exp / STATUS_FILE).read_text()) if (exp / STATUS_FILE).is_file() else {}
    trials = status.get("trials", {})
    states = [s["status"] for s in trials.values()]
    print("results: " + ", ".join(str(p) for p in paths))
    unfinished = sum(s not in ("COMPLETED", "STOPPED", Trial.ERROR) for s in states)
    unfinished += max(0, (status.get("total_trials") or 0) - len(states))
    if unfinished:
        print(f"interrupted with {unfinished} trial(s) unfinished: rerun the same command with --resume")
        return 130
    if Trial.ERROR in states:
        print(f"{states.count(Trial.ERROR)} trial(s) failed; see the 'Failed trials' section of results.md")
        return 1
    return 0


def total_trials(sweep: Sweep) -> int:
    return len(sweep.trials) if sweep.spec.grid is not None else sweep.spec.search.num_samples


def _size_text(sweep: Sweep) -> str:
    if sweep.spec.grid is not None:
        return f"grid of {len(sweep.trials)} trials"
    return f"search of {sweep.spec.search.num_samples} samples"


def dry_run_text(sweep: Sweep) -> str:
    """The spec's trials (grid, cross-checked with Tune's own expansion) or its search space."""
    text = sweep.describe()
    if sweep.spec.grid is not None:
        from ray.tune.search.variant_generator import generate_variants

        n = sum(1 for _ in generate_variants(param_space(sweep)))
        text += f"\nTune expands the param space to {n} trials" + ("" if n == len(sweep.trials) else " (MISMATCH)")
    else:
        names = [optuna_name(k, d) for k, d in sweep.spec.search.space.items()]
        text += f"\nOptuna parameters: {', '.join(names)}"
    return text
