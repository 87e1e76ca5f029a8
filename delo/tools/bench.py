# Over 450 lines: one module per benchmark target would scatter the shared timing and reporting helpers.
"""Performance figures of the model and the sweep machinery (issue 7); ``launch/bench.py`` writes them as JSON.

Every figure is one function returning ``{"value", "target", "met", ...context}``. Time figures are ratios of
two workloads measured side by side in this process: after a warm-up, rounds of A then B (B then A in every
other round); the value is the median over rounds of each round's ratio, so that load from other jobs on a
shared machine, which changes from round to round, slows both sides of a round alike. The ratio of medians and
of minimums come along. Ratio figures run with 1 torch thread by default (as a ``{"cpu": 1}`` trial; several
threads on a busy machine are far noisier). ``quick`` shrinks repeats and sizes so the whole set runs in well
under a minute (the test suite runs it); the full set takes a few minutes on 2 CPU cores.

Models are random ViLTs built from a config (nothing is downloaded): ``TINY_DIMS`` are the embedded ``tiny``
backbone's, ``VILT_B32_DIMS`` ViLT-B/32's. Batches are random tensors in the collate layout, with missing codes
drawn as the default missing setting does (eta 0.7 on both modalities: 30 % complete).
"""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from delo.config import ModelConfig
from delo.methods.delo.config import LossConfig
from delo.tools.bench_scale import driver_cost, report_scale

VILT_B32_DIMS = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "image_size": 384, "patch_size": 32, "max_position_embeddings": 40, "vocab_size": 30522,
}  # fmt: skip


def _tiny_dims() -> dict[str, int]:
    """The shipped ``tiny`` backbone's dimensions, read from its config.json (a copy here once drifted)."""
    from delo.vilt.backbone import TINY_DIR

    config = json.loads((TINY_DIR / "config.json").read_text())
    return {key: config[key] for key in VILT_B32_DIMS}


TINY_DIMS = _tiny_dims()
TEXT_LEN = 40
MISSING_MIX = (0.3, 0.35, 0.35)  # complete, text missing, image missing: eta = 0.7 on both (protocol default)


# ----------------------------------------------------------------------------------------------------------
# Building blocks: random backbones and batches, models, timing


def random_vilt(dims: dict[str, int], seed: int = 0):
    """A frozen random ViltModel with ``dims`` (fixed seed, global RNG untouched)."""
    from delo.vilt.backbone import build_random_vilt

    return build_random_vilt(seed=seed, modality_type_vocab_size=2, max_image_length=-1, **dims)


def random_batch(
    dims: dict[str, int],
    size: int,
    *,
    tasks: int = 1,
    classes: int = 10,
    seed: int = 0,
    mix: tuple[float, float, float] = MISSING_MIX,
) -> dict[str, torch.Tensor]:
    """A batch in the collate layout: text-missing samples are [CLS][SEP], image-missing ones the dummy image.

    Missing codes follow ``mix`` exactly where the batch size allows (rounded, complete first); ``task`` is
    spread over ``tasks`` and labels are global ids of that task (``classes`` per task).
    """
    g = torch.Generator().manual_seed(seed)
    side = dims["image_size"]
    counts = [round(f * size) for f in mix[:2]]
    missing = torch.tensor([0] * counts[0] + [1] * counts[1] + [2] * (size - sum(counts)))
    lengths = torch.randint(8, TEXT_LEN + 1, (size,), generator=g)
    lengths[missing == 1] = 2
    attention = (torch.arange(TEXT_LEN)[None, :] < lengths[:, None]).long()  # (B, L)
    pixel_values = torch.randn(size, 3, side, side, generator=g)
    pixel_values[missing == 2] = 1.0
    pixel_mask = torch.ones(size, side, side, dtype=torch.long)
    task = torch.arange(size) % tasks
    return {
        "input_ids": torch.randint(5, dims["vocab_size"], (size, TEXT_LEN), generator=g) * attention,
        "attention_mask": attention,
        "token_type_ids": torch.zeros(size, TEXT_LEN, dtype=torch.long),
        "pixel_values": pixel_values,
        "pixel_mask": pixel_mask,
        "missing": missing,
        "task": task,
        "labels": task * classes + torch.randint(0, classes, (size,), generator=g),
    }


def build_model(
    dims: dict[str, int],
    tasks: int = 1,
    classes: int = 10,
    seed: int = 0,
    cfg: ModelConfig | None = None,
    **overrides,
):
    """A DeLoModel on a random ViLT with ``tasks`` begun (``classes`` each), B randomised so deltas are live.

    ``cfg`` (default: the default ModelConfig) with ``overrides`` applied; E = 16, r = 4 by default.
    """
    from delo.methods.delo.model import DeLoModel

    cfg = ModelConfig(**{**(cfg or ModelConfig()).model_dump(), **overrides})
    model = DeLoModel(random_vilt(dims, seed), cfg, multilabel=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        for k in range(tasks):
            model.begin_task(k, classes, k * classes)
            for site in model.sites:
                torch.nn.init.normal_(site.pools[k].B, std=0.02)
        keys = torch.randn(model.task_keys.shape)
    with torch.no_grad():
        model.task_keys.copy_(keys)  # spread task inference over the learned tasks
    return model


def train_step(model, batch: dict, loss_cfg: LossConfig, autocast: bool = False) -> Callable[[], None]:
    """A closure running one training step (forward, backward, AdamW) on the latest task's parameters.

    ``autocast``: bf16 autocast on CUDA, as the runner does on a GPU (method.md §10).
    """
    from delo.methods.delo.loss import compute_loss

    task = model.num_tasks - 1
    opt = torch.optim.AdamW(model.task_parameters(task), lr=1e-4, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = compute_loss(model, batch, task, loss_cfg).total
        loss.backward()
        opt.step()

    return step


def predict_step(model, batch: dict, task_aware: bool = False) -> Callable[[], None]:
    """A closure running ``model.predict`` (task-agnostic, or with ``task_aware`` the true task) in eval mode."""
    model.eval()
    return lambda: model.predict(batch, task_aware=task_aware)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function over ``repeats`` rounds after ``warmup`` rounds.

    Each round calls every function once, in reverse order every other round (A B, B A, A B, ...), so that
    neither side always runs first.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for _ in range(repeats):
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
        order.reverse()
    return times


def _ratio(times: dict[str, list[float]], num: str, den: str) -> dict[str, Any]:
    """``value``: the median over rounds of time(num) / time(den), each round's pair run back to back, so that
    load which changes between rounds cancels. Also the ratio of the medians and of the minimums."""
    med = {k: statistics.median(v) for k, v in times.items()}
    rounds = [a / b for a, b in zip(times[num], times[den], strict=False)]
    quartiles = statistics.quantiles(rounds, n=4) if len(rounds) > 1 else rounds * 3
    return {
        "value": round(statistics.median(rounds), 4),
        "ratio_of_medians": round(med[num] / med[den], 4),
        "ratio_of_mins": round(min(times[num]) / min(times[den]), 4),
        "round_ratio_quartiles": [round(quartiles[0], 4), round(quartiles[2], 4)],
        "median_s": {k: round(v, 5) for k, v in med.items()},
        "repeats": len(rounds),
    }


def _judge(value: float | None, target: float | None, at_most: bool) -> bool | None:
    if value is None or target is None:
        return None
    return value <= target if at_most else value >= target


def _dims(dims: dict[str, int], batch: int | None = None) -> dict[str, int]:
    out = {
        "hidden": dims["hidden_size"], "layers": dims["num_hidden_layers"], "heads": dims["num_attention_heads"],
        "intermediate": dims["intermediate_size"], "image": dims["image_size"], "patch": dims["patch_size"],
        "text": TEXT_LEN,
    }  # fmt: skip
    return out if batch is None else {**out, "batch": batch}


def _complete_fraction(batch: dict) -> float:
    return float((batch["missing"] == 0).float().mean())


# ----------------------------------------------------------------------------------------------------------
# Figures


def routing_overhead(quick: bool = False) -> dict[str, Any]:
    """Train step (forward, backward, AdamW) of ``delo`` with lambda2 = 0 / ``delo_lora`` at the same r and batch.

    Measured at tiny dims and at ViLT-B/32 dims (in quick mode ViLT-B/32's width with 2 layers and batch 2);
    the target (<= 1.10) applies at ViLT-B/32 dims. E = 16, r = 4, lambda1 = 0.1 for both.
    """
    loss = LossConfig(lambda2=0.0)
    large = {**VILT_B32_DIMS, "num_hidden_layers": 2} if quick else VILT_B32_DIMS
    cases = {
        "tiny": (TINY_DIMS, 16, 4 if quick else 30),
        "vilt_b32": (large, 2 if quick else 4, 1 if quick else 5),
    }
    out: dict[str, Any] = {}
    for name, (dims, size, repeats) in cases.items():
        batch = random_batch(dims, size)
        steps = {v: train_step(build_model(dims, variant=v), batch, loss) for v in ("delo", "delo_lora")}
        out[name] = {
            **_ratio(time_interleaved(steps, repeats), "delo", "delo_lora"),
            "dims": _dims(dims, size),
        }
        del steps
    value = out["vilt_b32"]["value"]
    return {
        "value": value,
        "target": 1.10,
        "met": _judge(value, 1.10, at_most=True),
        **out,
        "note": "value is the vilt_b32 ratio" + (" (quick: 2 layers, batch 2)" if quick else ""),
    }


def consistency_cost(quick: bool = False) -> dict[str, Any]:
    """Train step with lambda2 = 0.1 / lambda2 = 0 (``delo``): the proxy pass over the complete samples.

    Informative: expected about 1 + the fraction of complete samples in the batch (reported).
    """
    cases = {"tiny": (TINY_DIMS, 16, 4 if quick else 30)}
    if not quick:
        cases["vilt_b32"] = (VILT_B32_DIMS, 4, 3)
    out: dict[str, Any] = {}
    for name, (dims, size, repeats) in cases.items():
        batch = random_batch(dims, size)
        model = build_model(dims)
        steps = {"lambda2_0.1": train_step(model, batch, LossConfig(lambda2=0.1)),
                 "lambda2_0": train_step(model, batch, LossConfig(lambda2=0.0))}  # fmt: skip
        fraction = _complete_fraction(batch)
        out[name] = {
            **_ratio(time_interleaved(steps, repeats), "lambda2_0.1", "lambda2_0"),
            "complete_fraction": fraction,
            "expected": round(1 + fraction, 4),
            "dims": _dims(dims, size),
        }
        del model, steps
    return {
        "value": out["tiny"]["value"],
        "target": None,
        "met": None,
        "complete_fraction": out["tiny"]["complete_fraction"],
        **out,
        "note": "value is the tiny ratio",
    }


def _eval_models(quick: bool) -> tuple[Any, Any, dict, int]:
    size = 32 if quick else 64  # eval.batch_size default 64
    batch = random_batch(TINY_DIMS, size, tasks=10)
    return build_model(TINY_DIMS, tasks=10), build_model(TINY_DIMS, tasks=1), batch, size


def task_scaling(quick: bool = False) -> dict[str, Any]:
    """Evaluation throughput (``predict``, task-agnostic) with 10 learned tasks / with 1, tiny dims."""
    many, one, batch, size = _eval_models(quick)
    times = time_interleaved(
        {"tasks_10": predict_step(many, batch), "tasks_1": predict_step(one, batch)}, 5 if quick else 30
    )
    ratio = _ratio(times, "tasks_1", "tasks_10")  # time(1) / time(10) = throughput(10) / throughput(1)
    throughput = {k: round(size / v, 2) for k, v in ratio["median_s"].items()}
    return {
        **ratio,
        "target": 0.90,
        "met": _judge(ratio["value"], 0.90, at_most=False),
        "samples_per_s": throughput,
        "dims": _dims(TINY_DIMS, size),
    }


def inference_passes(quick: bool = False) -> dict[str, Any]:
    """Evaluation time task-agnostic (Task-Key Memory) / task-aware (the true task), 10 learned tasks, tiny dims."""
    many, _, batch, size = _eval_models(quick)
    times = time_interleaved(
        {"agnostic": predict_step(many, batch), "task_aware": predict_step(many, batch, True)},
        5 if quick else 30,
    )
    ratio = _ratio(times, "agnostic", "task_aware")
    return {
        **ratio,
        "target": 1.05,
        "met": _judge(ratio["value"], 1.05, at_most=True),
        "tkm_layer": many.cfg.tkm_layer,
        "tkm_keys": many.cfg.tkm_keys,
        "dims": _dims(TINY_DIMS, size),
    }


def checkpoint_ratio(quick: bool = False) -> dict[str, Any]:
    """Bytes of the full model's state dict (backbone + one task) / bytes of one task's checkpoint file.

    ViLT-B/32 dims, E = 16, r = 4. The task file is ``torch.save(model.task_state(0))`` as the runner writes it;
    the full state dict is counted as its tensors' bytes (and, in the full run, also serialised).
    """
    model = build_model(VILT_B32_DIMS)
    state = model.state_dict()
    full_bytes = sum(t.numel() * t.element_size() for t in state.values())
    task_bytes = len(_saved(model.task_state(0)))
    out = {"value": round(full_bytes / task_bytes, 2), "target": 10.0, "met": full_bytes / task_bytes >= 10.0,
           "full_state_dict_bytes": full_bytes, "task_file_bytes": task_bytes,
           "task_parameters": sum(p.numel() for p in model.task_parameters(0)),
           "dims": {**_dims(VILT_B32_DIMS), "E": model.cfg.E, "r": model.cfg.r}}  # fmt: skip
    if not quick:
        out["full_state_dict_saved_bytes"] = len(_saved(state))
    return out


def _saved(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------
# Trial packing: whole trials, 1 vs 2 at a time on the machine's cores

# The quick variant's stand-in for a trial: a fixed amount of single-threaded work in a fresh process.
_QUICK_JOB = "sum(i * i for i in range({iters}))"


def trial_packing(quick: bool = False) -> dict[str, Any]:
    """Wall time of a small grid run one trial at a time / two at a time (target >= 1.6 on 2 cores).

    Full: the sweep launcher (``delo.sweep.driver.launch``, Ray Tune, ``resources: {cpu: 1}``) on a 4-trial grid of the
    ``tiny_test`` profile (4 seeds), ``max_concurrent`` 1 vs 2, each in a fresh process. The value is the ratio
    of the grid's wall time, first trial start to last trial end (Tune's timestamps); ``command_wall`` is the
    same ratio over the whole command, which adds the launcher's fixed cost (imports, Ray start and stop,
    report) to both sides. Quick: 2 fresh Python processes each running a fixed single-threaded loop (no Ray,
    no torch), 1 vs 2 at a time.
    """
    with tempfile.TemporaryDirectory(prefix="delo-bench-") as tmp:
        if quick:
            out = _pack_processes([sys.executable, "-c", _QUICK_JOB.format(iters=15_000_000)], trials=2)
        else:
            out = _pack_sweeps(Path(tmp), trials=4)
    value = out.pop("value")
    return {"value": value, "target": 1.6, "met": _judge(value, 1.6, at_most=False), **out}


def _pack_processes(command: list[str], trials: int) -> dict[str, Any]:
    walls, cpu = {}, {}
    for concurrent in (1, 2):
        before = _children_cpu_s()
        t0 = time.perf_counter()
        for start in range(0, trials, concurrent):
            procs = [subprocess.Popen(command) for _ in range(min(concurrent, trials - start))]
            codes = [p.wait() for p in procs]
            if any(codes):
                raise RuntimeError(f"packing job failed with exit codes {codes}")
        walls[concurrent] = time.perf_counter() - t0
        cpu[concurrent] = _children_cpu_s() - before
    return {
        "value": round(walls[1] / walls[2], 4),
        "wall_s": {"one_at_a_time": round(walls[1], 3), "two_at_a_time": round(walls[2], 3)},
        # CPU seconds the jobs got per wall second: at most 1 one at a time, at most 2 two at a time; a packed
        # share near 1 means the other core was busy with other work.
        "cores_used": {"one_at_a_time": round(cpu[1] / walls[1], 3), "two_at_a_time": round(cpu[2] / walls[2], 3)},
        "trials": trials, "load_average": [round(v, 2) for v in os.getloadavg()],
        "method": "quick: fresh Python processes running a fixed single-threaded loop; no Ray, no torch",
    }  # fmt: skip


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pack_sweeps(tmp: Path, trials: int) -> dict[str, Any]:
    import yaml

    from delo.config import load_config
    from delo.data import prepare_data

    profile = Path(__file__).resolve().parents[2] / "sweeps" / "profiles" / "tiny_test.yaml"
    prepare_data(load_config(profile))  # outside the timed runs
    walls, spans, durations = {}, {}, {}
    for concurrent in (1, 2):
        name = f"packing_{concurrent}"
        spec = tmp / f"{name}.yaml"
        spec.write_text(yaml.safe_dump({
            "name": name, "table": "generic", "base": {"file": str(profile)},
            "grid": {"seeds": list(range(trials))}, "resources": {"cpu": 1, "gpu": 0},
            "max_concurrent": concurrent, "failure": {"max_failures": 0},
        }))  # fmt: skip
        code = (
            f"import sys; from delo.sweep.driver import launch; sys.exit(launch({str(spec)!r}, storage="
            f"{str(tmp / 'storage')!r}, dashboard_port=0, num_cpus=2))"
        )
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True
        )
        walls[concurrent] = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"sweep with max_concurrent={concurrent} exited {done.returncode}:\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")  # fmt: skip
        spans[concurrent], durations[concurrent] = _trial_times(tmp / "storage" / name)
    return {
        "value": round(spans[1] / spans[2], 4),
        "grid_wall_s": {"one_at_a_time": round(spans[1], 3), "two_at_a_time": round(spans[2], 3)},
        "command_wall": {"value": round(walls[1] / walls[2], 4), "one_at_a_time_s": round(walls[1], 3),
                         "two_at_a_time_s": round(walls[2], 3)},
        # A trial's own duration: equal one and two at a time when the second core is free.
        "mean_trial_s": {"one_at_a_time": round(statistics.mean(durations[1]), 3),
                         "two_at_a_time": round(statistics.mean(durations[2]), 3)},
        "trials": trials, "load_average": [round(v, 2) for v in os.getloadavg()],
        "method": "Ray Tune via delo.sweep.driver.launch (fresh process each), resources {cpu: 1}, max_concurrent 1 vs 2, "
                  "grid = tiny_test profile x 4 seeds",
    }  # fmt: skip


def _trial_times(experiment: Path) -> tuple[float, list[float]]:
    """First trial start to last trial end, and each trial's duration, from Tune's per-trial result.json lines
    (``timestamp`` at each report, ``time_total_s`` since the trial started)."""
    starts, ends = [], []
    for path in experiment.glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [row for row in rows if "time_total_s" in row and "timestamp" in row]
        if rows:
            last = rows[-1]
            ends.append(last["timestamp"])
            starts.append(last["timestamp"] - last["time_total_s"])
    if not ends:
        raise RuntimeError(f"no Tune results under {experiment}")
    return max(ends) - min(starts), [end - start for start, end in zip(starts, ends, strict=False)]


# ----------------------------------------------------------------------------------------------------------
# Context: the default run's speed and memory, the machine, the GPU


def context(quick: bool = False) -> dict[str, Any]:
    """Training samples/s and peak RSS of the default run's model (default config: tiny dims, E = 16, r = 4,
    batch 16, lambda1 = lambda2 = 0.1) on a random batch.

    Measured with the threads the default run uses (every available CPU) and, interleaved, with 1 thread (a
    ``{"cpu": 1}`` trial): on a machine shared with other jobs the two can differ a lot.
    """
    from delo.config import DEFAULT_PROFILE, load_config
    from delo.runtime import available_cpus

    cfg = load_config(DEFAULT_PROFILE)
    threads = cfg.train.threads or available_cpus()
    previous = torch.get_num_threads()
    size = cfg.train.batch_size
    batch = random_batch(TINY_DIMS, size)
    step = train_step(build_model(TINY_DIMS, cfg=cfg.model), batch, cfg.loss)

    def with_threads(n: int) -> Callable[[], None]:
        def run() -> None:
            torch.set_num_threads(n)
            step()

        return run

    # Quick: 1 thread only; several threads on a busy machine can cost seconds per step (see the full run).
    runs = {"one": with_threads(1)} if quick else {"default": with_threads(threads), "one": with_threads(1)}
    steps = 2 if quick else 10
    try:
        times = time_interleaved(runs, steps)
    finally:
        torch.set_num_threads(previous)
    rate = {k: round(size / statistics.median(v), 2) for k, v in times.items()}
    main = "one" if quick else "default"
    return {
        "value": rate[main], "target": None, "met": None,
        "samples_per_s": rate[main], "threads": 1 if quick else threads, "samples_per_s_1_thread": rate["one"],
        "step_median_s": round(statistics.median(times[main]), 5), "steps": steps,
        "complete_fraction": _complete_fraction(batch), "peak_rss_bytes": _peak_rss(),
        "dims": _dims(TINY_DIMS, size),
        "note": "random ViLT of tiny's dims; peak RSS is this process's (measured first, before the larger models)",
        "gpu": _gpu_context(quick) if torch.cuda.is_available() else None,
        "gpu_note": None if torch.cuda.is_available() else "CUDA is not available on this machine",
    }  # fmt: skip


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _gpu_context(quick: bool) -> dict[str, Any]:
    """ViLT-B/32 dims on CUDA with bf16 autocast: samples/s, peak memory, and how many trials of a 0.25 GPU
    share fit in the device's memory (peak allocated plus a CUDA context allowance per process)."""
    device = torch.device("cuda")
    size = 4
    batch = {k: v.to(device) for k, v in random_batch(VILT_B32_DIMS, size).items()}
    model = build_model(VILT_B32_DIMS).to(device)
    step = train_step(model, batch, LossConfig(), autocast=True)

    def synced() -> None:
        step()
        torch.cuda.synchronize()

    torch.cuda.reset_peak_memory_stats(device)
    times = time_interleaved({"step": synced}, 3 if quick else 10, warmup=2)["step"]
    peak = torch.cuda.max_memory_allocated(device)
    total = torch.cuda.get_device_properties(device).total_memory
    per_trial = peak + 512 * 1024**2  # CUDA context and allocator slack per process
    return {
        "device": torch.cuda.get_device_name(device), "samples_per_s": round(size / statistics.median(times), 2),
        "batch": size, "peak_allocated_bytes": peak, "total_bytes": total,
        "fits_quarter_gpu": per_trial <= total // 4, "trials_fit_in_memory": int(total // per_trial),
    }  # fmt: skip


def _autogroup() -> bool | None:
    """Linux autogroup scheduling: CPU time is shared between sessions, so extra processes of one session
    (packed trials) do not raise its share while other sessions are busy."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None


def machine_info(threads: int) -> dict[str, Any]:
    from delo.runtime import available_cpus

    return {
        "cpu_count": os.cpu_count(), "available_cpus": available_cpus(), "torch": torch.__version__,
        "threads": threads, "python": platform.python_version(), "platform": platform.platform(),
        "cuda": torch.cuda.is_available(), "load_average": [round(v, 2) for v in os.getloadavg()],
        # OpenMP's wait policy decides how several threads cope with other jobs on the same cores
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "sched_autogroup": _autogroup(),
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# All figures

_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "context": context,  # first: its peak RSS is this process's
    "routing_overhead": routing_overhead,
    "consistency_cost": consistency_cost,
    "task_scaling": task_scaling,
    "inference_passes": inference_passes,
    "checkpoint_ratio": checkpoint_ratio,
    "trial_packing": trial_packing,
    "driver_cost": driver_cost,
    "report_scale": report_scale,
}
FIGURES = tuple(_FUNCTIONS)
"""The JSON keys of the figures, in the order they are measured."""
TARGETS = {"routing_overhead": 1.10, "task_scaling": 0.90, "inference_passes": 1.05, "trial_packing": 1.6,
           "checkpoint_ratio": 10.0, "driver_cost": 0.5, "report_scale": 15.0}  # fmt: skip
"""Targets of the figures that have one (the rest are informative)."""


def run_all(
    quick: bool = False,
    threads: int = 1,
    only: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every figure (or those in ``only``) with the machine info; ratio figures run with ``threads`` torch
    threads (1, as a ``{"cpu": 1}`` trial, is also the least disturbed by other jobs on a shared machine).

    A figure that raises is recorded with ``value`` None and its ``error``; the others still run.
    """
    names = [n for n in _FUNCTIONS if only is None or n in only]
    unknown = sorted(set(only or ()) - set(_FUNCTIONS))
    if unknown:
        raise ValueError(f"unknown figures {unknown}; choose from {list(_FUNCTIONS)}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    result: dict[str, Any] = {"quick": quick, "machine": machine_info(threads)}
    elapsed: dict[str, float] = {}
    try:
        for name in names:
            t0 = time.perf_counter()
            try:
                result[name] = _FUNCTIONS[name](quick)
            except (RuntimeError, ValueError, OSError) as exc:  # one failing figure must not lose the rest
                result[name] = {"value": None, "target": TARGETS.get(name), "met": None, "error": repr(exc)}
            elapsed[name] = round(time.perf_counter() - t0, 2)
            if log is not None:
                figure = result[name]
                log(f"{name}: {figure['value']} (target {figure['target']}) in {elapsed[name]} s"
                    + (f"; FAILED: {figure['error']}" if "error" in figure else ""))  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    result["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    result["elapsed_s"] = elapsed
    return result
