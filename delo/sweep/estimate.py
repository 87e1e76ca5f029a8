"""What a sweep will cost before it runs: ``delo-sweep SPEC --dry-run --calibrate`` or ``--estimate-from DIR``.

The model: a trial's wall time = its training steps x the time of one step + its evaluated samples x the time
of one evaluated sample. A trial's workload comes from its own config and the benchmark's split sizes: task k
trains ``steps_per_task`` steps (epochs x batches, capped by ``train.max_steps_per_task``), and after task j every
seen task i <= j is evaluated on the selection split (and test when ``eval.test``). Evaluation reuse
(``eval.reuse_frozen``) only makes a run cheaper, so this is an upper bound for the methods that reuse.

The two unit costs come from a **calibration** (the base config, a few steps of task 1 and one evaluation, on this
machine) or from an **earlier sweep** (its completed trials' measured train and eval seconds over their
workloads). The trials then run ``concurrency`` at a time, each taking the first free slot in Tune's order; the
total is that schedule's makespan, and device-hours are the trials' summed time times their CPUs (or GPUs).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from delo.config import RunConfig


@dataclass(frozen=True)
class UnitCosts:
    step_s: float
    """Seconds of one training step."""
    eval_sample_s: float
    """Seconds per evaluated sample (both read-outs)."""
    source: str
    """Where the costs come from and on which hardware."""


@dataclass(frozen=True)
class Workload:
    steps: int
    eval_samples: int

    def seconds(self, costs: UnitCosts) -> float:
        return self.steps * costs.step_s + self.eval_samples * costs.eval_sample_s


def workload(cfg: RunConfig, split_sizes: dict[str, list[int]]) -> Workload:
    """The trial's training steps and evaluated samples; ``split_sizes[split][k]`` = samples of task k."""
    from delo.train import steps_per_task

    tasks = len(split_sizes["train"])
    steps = sum(steps_per_task(cfg, math.ceil(n / cfg.train.batch_size)) for n in split_sizes["train"])
    splits = [cfg.eval.split] + (["test"] if cfg.eval.test and cfg.eval.split != "test" else [])
    evaluated = sum(sum(split_sizes[s][: j + 1]) for s in splits for j in range(tasks))
    return Workload(steps=steps, eval_samples=evaluated)


def split_sizes(cfg: RunConfig) -> dict[str, list[int]]:
    """Samples per task and split of the trial's benchmark (prepared by the caller)."""
    from delo.data import load_benchmark

    bench = load_benchmark(cfg)
    return {s: [len(bench.split(k, s)) for k in range(bench.num_tasks)] for s in ("train", "val", "test")}


def schedule(seconds: list[float], concurrency: int) -> float:
    """Makespan of running the trials in order, ``concurrency`` at a time, each in the first free slot."""
    slots = [0.0] * max(1, concurrency)
    for s in seconds:
        i = min(range(len(slots)), key=slots.__getitem__)
        slots[i] += s
    return max(slots)


def duration(seconds: float) -> str:
    """'12.5 min' below an hour, else '2.41 h'."""
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def hardware() -> str:
    from delo import provenance

    dev = provenance.device_info()
    gpus = dev.get("gpus") or []
    return f"{dev['cpu']}, {dev['cpus']} CPUs" + (f", {len(gpus)} x {gpus[0]}" if gpus else "")


def calibrate(cfg: RunConfig, steps: int = 5) -> UnitCosts:
    """Unit costs measured on this machine: ``steps`` training steps of the base config's first task and one
    evaluation of that task's selection split."""
    from delo.data import prepare_data
    from delo.train import run_continual

    probe = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"num_tasks": 1}),
            "train": cfg.train.model_copy(update={"max_steps_per_task": steps}),
            "eval": cfg.eval.model_copy(update={"test": False}),
        }
    )
    prepare_data(probe)
    with tempfile.TemporaryDirectory(prefix="delo-calibrate-") as tmp:
        result = run_continual(probe, Path(tmp))
    row = result["history"][0]
    work = workload(probe, split_sizes(probe))
    return UnitCosts(
        step_s=row["train_time_s"] / work.steps,
        eval_sample_s=row["eval_time_s"] / work.eval_samples,
        source=f"calibrated on this machine ({hardware()}): {work.steps} steps and one evaluation of the base config",
    )


def from_sweep(exp_dir: Path) -> UnitCosts:
    """Unit costs from an earlier sweep's completed trials: their measured train / eval seconds over their
    workloads (same profile: the trials' benchmarks must be prepared here)."""
    from delo.config import ConfigError, build_config
    from delo.sweep.experiment import read_launches
    from delo.sweep.records import collect

    done = [r for r in collect(exp_dir) if r.completed and r.task_seconds and r.config]
    if not done:
        raise ConfigError(f"{exp_dir}: no completed trial with measured times to estimate from")
    train_s = eval_s = 0.0
    steps = samples = 0
    for rec in done:
        cfg = build_config(rec.config, f"{exp_dir / rec.name}")
        work = workload(cfg, split_sizes(cfg))
        train_s += rec.task_seconds.get("train", 0.0) * (rec.tasks_done or 0)
        eval_s += rec.task_seconds.get("eval", 0.0) * (rec.tasks_done or 0)
        steps, samples = steps + work.steps, samples + work.eval_samples
    launches = read_launches(exp_dir)
    where = "hardware not recorded"
    if launches:
        dev = launches[0].get("device") or {}
        where = f"{dev.get('cpu', '?')}, {dev.get('cpus', '?')} CPUs" + (
            f", {len(dev['gpus'])} x {dev['gpus'][0]}" if dev.get("gpus") else ""
        )
    return UnitCosts(
        step_s=train_s / steps,
        eval_sample_s=eval_s / samples,
        source=f"measured by {len(done)} completed trials of {exp_dir} ({where})",
    )


def estimate_text(sweep, costs: UnitCosts, cpus: int | None = None) -> str:
    """Per trial and in total: expected wall time and device-hours at the spec's concurrency and resources."""
    from delo.data import prepare_data

    res = sweep.spec.resources
    cpus = cpus or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    concurrency = sweep.spec.max_concurrent
    if res.gpu == 0 and res.cpu > 0:
        concurrency = min(concurrency, max(1, int(cpus // res.cpu)))
    grid = sweep.spec.grid is not None
    configs = [t.run_config(sweep.base) for t in sweep.trials] if grid else [sweep.base_config]
    sizes: dict[str, dict[str, list[int]]] = {}
    lines = [f"cost estimate: {costs.source}", f"  one step {costs.step_s:.3f} s, one evaluated sample "
             f"{costs.eval_sample_s * 1000:.2f} ms; {concurrency} trials at a time"]  # fmt: skip
    seconds = []
    labels = (
        [f"{t.label} seed={t.seed}" for t in sweep.trials] if grid else ["each sampled trial (full length)"]
    )
    for label, cfg in zip(labels, configs, strict=True):
        key = json.dumps(cfg.to_dict()["data"], sort_keys=True)
        if key not in sizes:
            prepare_data(cfg)
            sizes[key] = split_sizes(cfg)
        work = workload(cfg, sizes[key])
        s = work.seconds(costs)
        seconds.append(s)
        lines.append(
            f"  {label:<36} {work.steps:>6} steps {work.eval_samples:>8} eval samples  ~{s / 60:.1f} min"
        )
    if not grid:  # a search: num_samples trials at most full length (ASHA stops some early)
        seconds = seconds * sweep.spec.search.num_samples
    unit, per = ("GPU", res.gpu) if res.gpu > 0 else ("CPU", res.cpu)
    device_h = sum(seconds) * per / 3600
    bound = " (an upper bound: ASHA stops trials early)" if not grid else ""
    lines.append(
        f"total: {len(seconds)} trials, ~{duration(schedule(seconds, concurrency))} wall at {concurrency} at a "
        f"time, {device_h:.2f} {unit}-hours{bound}"
    )
    return "\n".join(lines)


__all__ = ["UnitCosts", "Workload", "calibrate", "estimate_text", "from_sweep", "schedule", "workload"]
