"""The worker side of a sweep: the function Tune runs once per trial (ray-tune.md §4 has the facts it follows).

:func:`run_trial` builds the trial's typed RunConfig (base + the grid trial's overrides, or the searcher's
suggestion), restores Tune's checkpoint into ``<trial_dir>/<trial_dir>/checkpoints`` and calls ``run_continual``
with an ``on_task_end`` that sends one ``tune.report`` + checkpoint per task.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from delo.atomic import remove_temp_files
from delo.config import RunConfig
from delo.metric_keys import AP_SEEN, FINAL_AP, PARAMS_TOTAL, PARAMS_TRAINABLE, TASK
from delo.sweep.experiment import RUNNER_CHECKPOINTS, RUNNER_RESULT, write_trial_info
from delo.sweep.grid import TRIAL_KEY, TrialSpec, trial_of

THREAD_HANDOVER_S = 60
"""How long a reused trial process waits for the previous trial's thread to end (see run_trial)."""

RunFn = Callable[[RunConfig, Path, Callable[[dict, Path], None]], dict]
"""``delo.train.run_continual``'s contract; tests pass a fake runner."""


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
    trial = trial_of(config)
    cfg = trial.run_config(base)
    _limit_compute(resources)
    # The driver reuses a finished trial's process for the next trial (reuse_actors, ray-tune.md §7). Before the
    # handover Tune waits TUNE_FUNCTION_THREAD_TIMEOUT_S (read in this process, default 2 s) for the old trial's
    # thread to end (a stopped trial closes its TensorBoard files first), and on a timeout it fails the *next*
    # trial without a retry; a loaded machine can take longer than 2 s.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(THREAD_HANDOVER_S))
    _restore_checkpoint(tune.get_checkpoint(), out_dir)
    remove_temp_files(trial_dir)  # a killed attempt's trial.json in the making (the trial owns its folder)
    info = _trial_info(trial, config, cfg, tune.get_context().get_trial_id())
    write_trial_info(trial_dir, {**info, "out_dir": out_dir.name})
    if run_fn is None:
        from delo.train import run_continual as run_fn

    def on_task_end(metrics: dict[str, Any], ckpt_dir: Path) -> None:
        if AP_SEEN not in metrics or TASK not in metrics:
            raise KeyError(f"the runner's report lacks '{TASK}' or '{AP_SEEN}' (keys: {sorted(metrics)})")
        metrics = dict(metrics)
        if FINAL_AP in metrics:
            metrics.update(_param_counts(out_dir))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))

    run_fn(cfg, out_dir, on_task_end)


def _param_counts(out_dir: Path) -> dict[str, int]:
    """The runner's parameter counts, for the last report (a Pareto search's size objective). The runner writes
    its result.json before the last task's report (ray-tune.md §4), so it is there to read; none if it is not."""
    import json

    try:
        params = json.loads((out_dir / RUNNER_RESULT).read_text()).get("params") or {}
    except (OSError, ValueError):
        return {}
    out = {}
    for key, name in ((PARAMS_TRAINABLE, "trainable"), (PARAMS_TOTAL, "total")):
        if isinstance(params.get(name), int):
            out[key] = params[name]
    return out


def _trial_info(trial: TrialSpec, config: dict[str, Any], cfg: RunConfig, trial_id: str) -> dict[str, Any]:
    return {
        "trial_id": trial_id,
        "label": trial.label,
        "variant": trial.variant,
        "seed": cfg.seed,
        "overrides": trial.overrides,
        "search": {} if TRIAL_KEY in config else dict(config),
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
    """Tune's last checkpoint is the truth: it replaces the runner's checkpoint folder (none: start clean).

    When its ``state.pt`` cannot be read back, the newest older checkpoint Tune kept beside it (``num_to_keep``)
    whose state can is used instead, with a warning: the trial goes on from its last good checkpoint instead of
    failing on every retry. A damaged task file needs no fallback: the runner retrains that task itself."""
    target = out_dir / RUNNER_CHECKPOINTS
    if target.exists():
        shutil.rmtree(target)
    if checkpoint is None:
        return
    checkpoint.to_directory(str(target))
    problem = _state_problem(target)
    if problem is None:
        return
    latest = Path(checkpoint.path)
    kept = sorted(latest.parent.glob("checkpoint_*")) if latest.parent.is_dir() else []
    for older in reversed([p for p in kept if p.name < latest.name]):
        if _state_problem(older) is None:
            shutil.rmtree(target)
            shutil.copytree(older, target)
            print(
                f"warning: {latest / 'state.pt'}: damaged ({problem}); continuing from the older checkpoint {older}",
                file=sys.stderr,
                flush=True,
            )
            return
    # nothing better: the runner refuses the damaged state with its own message (the trial's error)


def _state_problem(folder: Path) -> str | None:
    """What is wrong with ``folder/state.pt`` (the runner's words), None when it reads back (or is absent)."""
    if not (folder / "state.pt").is_file():
        return None
    from delo.checkpoint import load_state  # torch: only for trials that resume
    from delo.config import DamagedFileError

    try:
        load_state(folder)
    except DamagedFileError as exc:
        return exc.problem
    return None


def make_trainable(
    base: dict[str, Any], exp_dir: Path, resources: dict[str, float], run_fn: RunFn | None = None
):
    """The trainable with the base config bound (object store) and the spec's resources per trial."""
    fn = tune.with_parameters(run_trial, base=base, exp_dir=str(exp_dir), resources=resources, run_fn=run_fn)
    return named_by_trial(tune.with_resources(fn, resources))


def named_by_trial(fn):
    """The function trainable as Tune's own class, whose repr is the trial folder (label, seed, trial id).

    Ray records an actor's ``repr`` once it is created and shows it as the actor's name on the dashboard's
    Actors page and in log prefixes; Tune's class for a function answers ``run_trial`` for every trial."""
    from ray.tune.trainable.function_trainable import wrap_function

    base_cls = wrap_function(fn)  # reads the resources with_resources attached

    class TrialActor(base_cls):
        def __repr__(self) -> str:
            storage = getattr(self, "_storage", None)
            name = getattr(storage, "trial_dir_name", None)
            if name:
                return Path(name).name
            info = getattr(self, "_trial_info", None)
            return info.trial_name if info is not None else base_cls._name

    TrialActor.__name__ = TrialActor.__qualname__ = "DeloTrial"
    return TrialActor
