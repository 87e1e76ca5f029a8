"""The driver side of a sweep: prepare inputs, start or join Ray, build (or restore) the Tuner, run, report.

:func:`launch` is what ``launch/sweep.py`` calls. The grid Tuner gets the validated trials themselves as one
``grid_search`` axis (BasicVariantGenerator, no scheduler); the search Tuner gets Optuna TPE + ASHA on ``task``.
Both use a fixed experiment name so that --resume finds them (ray-tune.md §5-6).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback

from delo import provenance
from delo.atomic import remove_temp_files
from delo.config import ConfigError
from delo.folderlock import FolderLock, remove_if_only_lock
from delo.sweep.experiment import (
    OPTUNA_DB,
    Status,
    check_resumable,
    end_launch,
    has_experiment,
    has_tune_state,
    read_status,
    record_launch,
    save_spec,
    trial_dirname,
    unfinished_count,
)
from delo.sweep.grid import TRIAL_KEY, trial_of
from delo.sweep.progress import ProgressCsv, RungLog, SweepProgress
from delo.sweep.ray_state import align_trials_with_state, ray_temp_root, repair_ray_state
from delo.sweep.report import write_report
from delo.sweep.search import TUNE_METRIC, asha_reduction_factor, asha_rungs
from delo.sweep.searcher import PrunedAwareOptunaSearch, make_scheduler, make_searcher, study_storage
from delo.sweep.spec import Sweep, load_sweep
from delo.sweep.trainable import RunFn, make_trainable

# ----------------------------------------------------------------------------------------------------------
# Tuner


def param_space(sweep: Sweep) -> dict[str, Any]:
    """Grid: the validated trials as one grid_search axis; search: constants only (the seed)."""
    if sweep.spec.grid is None:
        return {"seed": sweep.base_config.seed}
    return {TRIAL_KEY: tune.grid_search([t.to_tune() for t in sweep.trials])}


def _dirname(trial: Trial) -> str:
    t = trial_of(trial.config)
    return trial_dirname(t.label, t.seed, trial.trial_id)


def _trainable(sweep: Sweep, run_fn: RunFn | None):
    res = {"cpu": sweep.spec.resources.cpu, "gpu": sweep.spec.resources.gpu}
    return make_trainable(sweep.base, sweep.experiment_dir, res, run_fn)


def build_tuner(
    sweep: Sweep,
    run_fn: RunFn | None = None,
    progress_interval_s: float = 20.0,
    callbacks: list[tune.Callback] = (),
    searcher: PrunedAwareOptunaSearch | None = None,
) -> tune.Tuner:
    """A fresh Tuner for the sweep. ``callbacks`` run after the project's own (tests add probes there);
    ``searcher`` replaces :func:`make_searcher`'s (a caller that keeps it can read its study afterwards)."""
    spec = sweep.spec
    # reuse_actors: a trial slot's worker process runs the next trial instead of a fresh process per trial
    # (Ray's worker start and the trial's imports, torch and transformers, cost seconds; ray-tune.md §7)
    common = {
        "max_concurrent_trials": spec.max_concurrent,
        "trial_dirname_creator": _dirname,
        "reuse_actors": True,
    }
    if spec.grid is not None:
        tune_config = tune.TuneConfig(num_samples=1, **common)
    else:
        relax_metric_check(sweep)
        searcher = searcher or make_searcher(sweep, storage=study_storage(sweep))
        tune_config = tune.TuneConfig(
            metric=TUNE_METRIC,
            mode=spec.search.mode,
            search_alg=searcher,
            scheduler=make_scheduler(sweep, searcher),
            num_samples=spec.search.num_samples,
            **common,
        )
    progress = SweepProgress(
        spec.name, str(sweep.experiment_dir), sweep.num_tasks, sweep.total_trials, progress_interval_s
    )
    own = [ProgressCsv(), JsonLoggerCallback(), progress]
    if spec.search is not None and spec.search.scheduler.type != "none":
        sched = spec.search.scheduler
        rf = asha_reduction_factor(sweep.num_tasks, sched.reduction_factor)
        rungs = asha_rungs(sweep.num_tasks, sched.grace_period, rf)
        own.append(RungLog(str(sweep.experiment_dir), rungs, TUNE_METRIC, sweep.num_tasks))
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=str(sweep.storage),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
        callbacks=[*own, *callbacks],
        verbose=0,
    )
    return tune.Tuner(
        _trainable(sweep, run_fn),
        param_space=param_space(sweep),
        tune_config=tune_config,
        run_config=run_config,
    )


def relax_metric_check(sweep: Sweep) -> None:
    """A multi-objective search's objectives (final_ap, params_trainable) exist only in a trial's last report,
    but Tune requires every searcher metric in every report unless TUNE_DISABLE_STRICT_METRIC_CHECKING is set
    (read by the driver's TuneController at each result). The trainable still refuses a report without task
    and ap_seen, and the searcher tells FAIL for a finished trial that lacks an objective."""
    if sweep.spec.search is not None and sweep.spec.search.multi_objective:
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"


def can_restore(path: Path) -> bool:
    """Tuner.can_restore only checks tuner.pkl (written at construction); the state file proves a started run."""
    return tune.Tuner.can_restore(str(path)) and has_tune_state(path)


def restore_tuner(sweep: Sweep, run_fn: RunFn | None = None) -> tune.Tuner:
    """Continue the experiment: unfinished and errored trials resume from their last checkpoints; finished ones
    are kept as they are. The searcher (Optuna study), scheduler and callbacks come back from the experiment."""
    relax_metric_check(sweep)
    return tune.Tuner.restore(
        str(sweep.experiment_dir), _trainable(sweep, run_fn), resume_unfinished=True, resume_errored=True
    )


# ----------------------------------------------------------------------------------------------------------
# Inputs prepared on the driver


def prepare_inputs(sweep: Sweep) -> None:
    """Driver: build every distinct data setting (synthetic set, missing tables) and check each backbone."""
    from delo.data import prepare_data
    from delo.vilt.backbone import check_backbone_available

    configs = [sweep.base_config]
    if sweep.spec.grid is not None:
        configs = [t.run_config(sweep.base) for t in sweep.trials]
    seen_data, seen_backbones = set(), set()
    for cfg in configs:
        key = json.dumps({"data": cfg.to_dict()["data"], "backbone": cfg.model.backbone}, sort_keys=True)
        if key not in seen_data:
            seen_data.add(key)
            prepare_data(cfg)
        if cfg.model.backbone not in seen_backbones:
            seen_backbones.add(cfg.model.backbone)
            check_backbone_available(cfg.model.backbone)


def write_hparams_config(sweep: Sweep) -> None:
    """The experiment-level TensorBoard hparams config (once): every hyperparameter with its domain + metrics."""
    from delo.tblog import flatten_hparams, metric_tags
    from delo.tblog import write_hparams_config as write

    exp = sweep.experiment_dir
    if list(exp.glob("events.out.tfevents.*")):
        return
    domains: dict[str, Any] = dict.fromkeys(flatten_hparams(sweep.base_config.to_dict()))
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
        swept = [k for k, values in varied.items() if len(values) > 1]
    else:
        domains.update(sweep.space.hparam_domains())
        swept = list(sweep.space.hparam_domains())
    # The swept keys first, so that TensorBoard ticks them by default (tblog.write_hparams_config).
    domains = {k: domains[k] for k in [*swept, *(k for k in domains if k not in swept)]}
    write(exp, domains, metric_tags(test=sweep.base_config.eval.test), varied=swept)


# ----------------------------------------------------------------------------------------------------------
# Ray


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
    # "local": a new Ray of this sweep's own, even when another one runs on this machine (ray.init() alone would
    # join that one silently, with its CPUs and its dashboard, and refuse --num-cpus)
    ctx = ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=bool(dashboard_port),
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port or None,
        log_to_driver=False,
    )
    info = ctx.address_info
    logs = f"{info.get('session_dir', '/tmp/ray')}/logs"
    lines = [f"started a local Ray ({info.get('gcs_address', '')}); trial logs under {logs}"]
    if dashboard_port:
        lines.append(
            f"dashboard: http://{ctx.dashboard_url}  (only on 127.0.0.1; remote: ssh -L "
            f"{dashboard_port}:127.0.0.1:{dashboard_port} host)"
        )
        if os.environ.get("RAY_AUTH_MODE", "token") != "disabled":
            lines.append(
                "  token auth is on: the page asks for the token in ~/.ray/auth_token "
                "(CLI/curl: header 'Authorization: Bearer <token>'; ray CLI reads the file itself)"
            )
        else:
            lines.append("  auth disabled (RAY_AUTH_MODE=disabled)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# Launch and finish


def launch(spec: str | Path, sets: list[str] | tuple[str, ...] = (), **options: Any) -> int:
    """Run (or resume, or dry-run) a sweep. Returns the exit status: 0 ok, 1 trials failed, 2 bad input (a
    second sweep on a busy experiment folder included), 130 interrupted (resume with --resume).

    ``options`` are :func:`_launch`'s. The experiment folder is locked (delo.folderlock) from before the
    "already holds a sweep" check until the report is written, so two drivers never share one folder.
    """
    with contextlib.ExitStack() as held:
        return _launch(held, spec, sets, **options)


def _launch(
    held: contextlib.ExitStack,
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
    calibrate: bool = False,
    estimate_from: str | None = None,
    run_fn: RunFn | None = None,
    check_inputs: bool = True,
    progress_interval_s: float = 20.0,
) -> int:
    """:func:`launch`'s body; ``held`` keeps the experiment folder's lock until launch returns.

    ``run_fn`` replaces ``delo.train.run_continual`` in the trials and ``check_inputs=False`` skips the driver's
    data preparation and backbone check (both for tests of the Tune mechanics with a fake runner).
    """
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    try:
        sweep = load_sweep(spec, sets, profile=profile, storage=storage)
        if dry_run:
            print(dry_run_text(sweep), flush=True)
            if calibrate or estimate_from:
                from delo.sweep import estimate

                if estimate_from and not Path(estimate_from).is_dir():
                    raise ConfigError(f"--estimate-from {estimate_from}: no such sweep folder")
                costs = (
                    estimate.from_sweep(Path(estimate_from))
                    if estimate_from
                    else estimate.calibrate(sweep.base_config)
                )
                print(estimate.estimate_text(sweep, costs, num_cpus))
            return 0
        exp = sweep.experiment_dir
        created = not exp.exists()
        held.enter_context(FolderLock(exp, "sweep", "give this sweep another --storage or spec name"))
        if created:  # a refusal below (bad data, no backbone) leaves no folder holding a lock file alone
            held.callback(remove_if_only_lock, exp)
        if resume:
            check_resumable(sweep)
        elif has_experiment(exp):
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
        if restoring:
            try:  # a Tune file cut short by a killed driver: repaired from Ray's staging copy, or exit 2
                repair_ray_state(exp, ray_temp_root())
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            # trial folders ahead of that state (a driver killed between two snapshots)
            align_trials_with_state(exp, ray_temp_root())
            remove_temp_files(exp)  # the killed driver's files in the making (this driver holds the lock)
        if resume and not restoring:
            print(
                f"{exp}: no Tune state yet (interrupted before the first snapshot); starting the sweep afresh"
            )
        if not restoring:
            save_spec(sweep)
            write_hparams_config(sweep)
        record_launch(exp, provenance.collect())
        print(f"sweep {sweep.name}: {_size_text(sweep)} -> {exp}")
        print(
            f"TensorBoard: tensorboard --logdir {exp} --host 127.0.0.1 --port 6006"
            + (" --reload_multifile=true" if restoring else ""),
            flush=True,
        )
        if sweep.spec.search is not None:
            print(
                f"Optuna study {sweep.name!r}: optuna-dashboard sqlite:///{exp / OPTUNA_DB}  "
                '(pip install -e ".[dashboard]")',
                flush=True,
            )
        tuner = restore_tuner(sweep, run_fn) if restoring else build_tuner(sweep, run_fn, progress_interval_s)
        tuner.fit()
    finally:
        ray.shutdown()
    try:
        return finish(sweep)
    except ConfigError as exc:  # a damaged bookkeeping file (DamagedFileError names it and says what to do)
        print(f"error: {exc}", file=sys.stderr)
        return 2


def finish(sweep: Sweep) -> int:
    """Write the report and turn the trial statuses into an exit status."""
    exp = sweep.experiment_dir
    end_launch(exp, provenance.now())  # results.md's provenance says when this launch ended
    paths = write_report(exp)
    status = read_status(exp)
    states = [s["status"] for s in status.get("trials", {}).values()]
    print("results: " + ", ".join(str(p) for p in paths))
    unfinished = unfinished_count(status)
    if unfinished:
        print(f"interrupted with {unfinished} trial(s) unfinished: rerun the same command with --resume")
        return 130
    if Status.ERROR in states:
        print(f"{states.count(Status.ERROR)} trial(s) failed; see the 'Failed trials' section of results.md")
        return 1
    return 0


def _size_text(sweep: Sweep) -> str:
    if sweep.spec.grid is not None:
        return f"grid of {len(sweep.trials)} trials"
    s = sweep.spec.search
    goal = " for " + " and ".join(f"{o.mode} {o.metric}" for o in s.objectives) if s.multi_objective else ""
    return f"search of {s.num_samples} samples{goal}"


def dry_run_text(sweep: Sweep) -> str:
    """The spec's trials (grid) or its search space with the Optuna parameter names."""
    text = sweep.describe()
    if sweep.spec.grid is None:
        names = [d.optuna_name(k) for k, d in sweep.spec.search.space.items()]
        text += f"\nOptuna parameters: {', '.join(names)}"
    return text
