"""The continual runner: train tasks in order, evaluate every seen task, checkpoint, report. No Ray here.

``run_continual(cfg, out_dir, on_task_end)`` does, for each task k (method.md §10, protocol.md §1):

1. ``model.begin_task(k)`` (fresh pools and head, seeded per task), a fresh AdamW over
   ``model.task_parameters(k)`` with linear warm-up then cosine to 0, stepped per iteration;
2. one training pass per epoch over task k's train split only (task keys update inside the model's train pass);
3. evaluation of tasks 1..k on ``cfg.eval.split`` (and test when ``cfg.eval.test``), task-agnostic and task-aware;
4. a checkpoint of what changed (:mod:`delo.checkpoint`), TensorBoard, then ``on_task_end(metrics, ckpt_dir)``.

A restarted run on the same ``out_dir`` resumes after the last completed task and ends with exactly the metrics
of an uninterrupted run: every phase that consumes the global torch RNG starts from a seed derived from
(seed, phase, task), and shuffling has its own generator.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from delo import checkpoint, provenance, runtime
from delo.atomic import atomic_write_json, remove_temp_files
from delo.config import DamagedFileError, RunConfig
from delo.evaluate import ResultBook, Reuse, evaluate_task
from delo.methods.base import RoutingDiagnostics
from delo.metric_keys import TASK, TASK_ROUTING, TEST_PREFIX, current_keys, is_final
from delo.metrics import row_shares

OnTaskEnd = Callable[[dict[str, Any], Path], None]
PROBE_SIZE = 16  # samples of the per-epoch routing probe (debug.diagnostics)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the task and step."""


def _build(cfg: RunConfig, multilabel: bool, device: torch.device):
    """Frozen backbone + the ``model.method`` model on ``device``; seeded so the model's own initial tensors are
    reproducible."""
    from delo.methods import build_method
    from delo.vilt.backbone import load_backbone

    runtime.seed_everything(runtime.derive_seed(cfg.seed, "build"))
    backbone = load_backbone(cfg.model, data_square=cfg.data.square)
    model = build_method(backbone.vilt, cfg, multilabel).to(device)
    return model, backbone


def build_model(cfg: RunConfig, multilabel: bool | None = None):
    """A fresh model of ``cfg.model.method`` (no task begun yet). ``multilabel`` defaults to what the data set is."""
    if multilabel is None:
        multilabel = cfg.data.name == "mmimdb" or (
            cfg.data.name == "synthetic" and cfg.data.synthetic.kind == "ml"
        )
    model, _ = _build(cfg, multilabel, runtime.resolve_device(cfg.train.device))
    return model


# ----------------------------------------------------------------------------------------------------------
# One task's training


def lr_factor(step: int, total: int, warmup_frac: float) -> float:
    """Multiplier of the base lr at 0-based ``step`` of ``total``: linear warm-up, then cosine to 0."""
    warmup = int(warmup_frac * total)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def steps_per_task(cfg: RunConfig, batches_per_epoch: int) -> int:
    total = cfg.train.epochs * batches_per_epoch
    return min(total, cfg.train.max_steps_per_task) if cfg.train.max_steps_per_task else total


def make_optimizer(model, task: int, cfg: RunConfig, total: int):
    """A fresh AdamW over task ``task``'s parameters and its warm-up + cosine schedule (method.md §10).

    Two parameter groups: factors and heads at ``train.lr``, routers and maps at ``train.lr *
    train.router_lr_mult`` (an empty group is left out); the schedule multiplies both.
    """
    tc = cfg.train
    groups = model.task_parameter_groups(task)
    param_groups = [{"params": groups.main, "lr": tc.lr}]
    if groups.routing:
        param_groups.append({"params": groups.routing, "lr": tc.lr * tc.router_lr_mult})
    opt = torch.optim.AdamW(
        param_groups, lr=tc.lr, weight_decay=tc.weight_decay, betas=tuple(tc.betas), eps=tc.eps
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, tc.warmup_frac))
    return opt, sched


def train_task(
    model,
    loader,
    task: int,
    cfg: RunConfig,
    device: torch.device,
    step0: int,
    tb=None,
    progress: bool = False,
    label: str = "",
    probe: dict | None = None,
) -> dict[str, float]:
    """Train task ``task`` on its loader; returns mean loss parts and the step count.

    ``step0`` is the number of steps of earlier tasks (the global step of ``cfg.debug.nan_at_step`` is 1-based).
    With ``cfg.debug.diagnostics`` and a TensorBoard logger, ``probe`` (a fixed batch of the task's train data,
    on ``device``) feeds the per-epoch routing diagnostics of :mod:`delo.methods.delo.diagnostics`.
    """
    total = steps_per_task(cfg, len(loader))
    opt, sched = make_optimizer(model, task, cfg, total)
    clipped = model.task_parameters(task) if model.max_grad_norm is not None else None
    # only methods that route inputs have routing dynamics to measure
    diagnose = tb is not None and probe is not None and isinstance(model, RoutingDiagnostics)
    dynamics = model.training_dynamics(task, probe, cfg.debug.diagnostics_every) if diagnose else None
    if dynamics is not None:
        with runtime.autocast(device):
            dynamics.probe()  # the reference selections of the epoch-1 churn
    sums: dict[str, float] = {}
    bar = _progress_bar(total, label) if progress else None
    model.train()
    step, samples, t0 = 0, 0, time.perf_counter()
    while step < total:
        for batch in loader:
            if step >= total:
                break
            batch = runtime.move_batch(batch, device)
            with runtime.autocast(device):
                out = dynamics.loss(batch, task, step) if dynamics else model.training_loss(batch, task)
            loss = out.total
            global_step = step0 + step + 1
            if cfg.debug.nan_at_step == global_step:
                loss = loss * float("nan")  # fault injection for tests
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at task {task + 1}, step {step + 1} of {total} "
                    f"(global step {global_step}); stopping the run"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if dynamics is not None:
                dynamics.after_backward(out)
            if clipped is not None:  # the method's reference clips (ContinualMethod.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(clipped, model.max_grad_norm)
            opt.step()
            sched.step()
            for part, value in {"total": loss, **out.parts}.items():
                sums[part] = sums.get(part, 0.0) + (
                    float(value.detach()) if torch.is_tensor(value) else value
                )
            step += 1
            samples += int(batch["missing"].shape[0])
            if tb is not None and (step % 10 == 0 or step == total):
                tb.train_step(loss.item(), opt.param_groups[0]["lr"], global_step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", sps=f"{samples / (time.perf_counter() - t0):.0f}")
        if dynamics is not None:  # one epoch (or the capped remainder of one) done
            with runtime.autocast(device):
                tb.dynamics(dynamics.epoch_end(), step0 + step)
    if bar is not None:
        bar.close()
    model.eval()
    means = {("train_loss" if p == "total" else f"train_loss_{p}"): s / max(1, step) for p, s in sums.items()}
    return {**means, "train_steps": step}


def _progress_bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="step", file=sys.stderr, leave=True, dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------------------
# The run


class _Run:
    """State of one run_continual call; methods read top to bottom as the loop does."""

    def __init__(self, cfg: RunConfig, out_dir: Path, progress: bool):
        from delo.data import load_benchmark

        self.cfg, self.out_dir, self.progress = cfg, Path(out_dir), progress
        self.ckpt_dir = checkpoint.checkpoint_dir(self.out_dir)
        for folder in (
            self.out_dir,
            self.ckpt_dir,
        ):  # this run is the folder's one writer (a killed one's leftovers)
            remove_temp_files(folder)
        self.started = time.perf_counter()
        self.provenance = provenance.collect()  # which code, libraries, machine and command
        self.threads = runtime.set_threads(cfg.train.threads)
        self.device = runtime.resolve_device(cfg.train.device)
        self.state = checkpoint.load_state(self.ckpt_dir)
        if self.state is not None and self.state["config_hash"] != cfg.hash():
            # refuse before touching the data (fingerprint checked again below)
            checkpoint.check_compatible(
                self.state, cfg.to_dict(), cfg.hash(), self.state["fingerprint"], self.ckpt_dir
            )
        self.bench = load_benchmark(cfg)
        if self.state is not None:
            checkpoint.check_compatible(
                self.state, cfg.to_dict(), cfg.hash(), self.bench.fingerprint, self.ckpt_dir
            )
        self.T = self.bench.num_tasks
        self.splits = [cfg.eval.split] + (["test"] if cfg.eval.test and cfg.eval.split != "test" else [])
        self.model, self.backbone = _build(cfg, self.bench.multilabel, self.device)
        self.books = {s: ResultBook(self.T) for s in self.splits}
        # (split, task) -> its last row's predictions; empty after a resume, so that row forwards everything
        self.reuse: dict[tuple[str, int], Reuse] = {}
        self.history: list[dict[str, Any]] = []
        self.steps_done, self.elapsed_before, self.next_task = 0, 0.0, 0
        self.steps_by_task: list[int] = []  # lets a damaged task checkpoint rewind to the task before it
        if self.state is not None:
            self._restore()

    # -- resume -------------------------------------------------------------------------------------------

    def _begin(self, k: int) -> None:
        classes = self.bench.task_classes[k]
        runtime.seed_everything(runtime.derive_seed(self.cfg.seed, "begin_task", k))
        self.model.begin_task(k, len(classes), classes[0])

    def _restore(self) -> None:
        s = self.state
        tasks, damaged = [], None
        for k in range(s["next_task"]):
            try:
                tasks.append(checkpoint.load_task(self.ckpt_dir, k))
            except DamagedFileError as exc:
                damaged = exc
                break
        good = len(tasks)
        steps_by_task = list(s.get("steps_by_task", []))
        if damaged is not None:
            if len(steps_by_task) < good:  # written before steps_by_task existed: cannot rewind exactly
                raise damaged
            last = s["next_task"]
            which = f"task {good + 1}" if good + 1 == last else f"tasks {good + 1} to {last}"
            print(
                f"warning: {damaged.path}: damaged ({damaged.problem}); retraining {which} from the last good "
                "checkpoint",
                file=sys.stderr,
                flush=True,
            )
        for k, tensors in enumerate(tasks):
            self._begin(k)
            self.model.load_task_state(k, tensors)
        self.books = {
            split: ResultBook(self.T, _rows_before(s["results"][split], good)) for split in self.splits
        }
        self.history = [current_keys(row) for row in s["history"][:good]]  # a checkpoint may say *_oracle
        self.steps_by_task = steps_by_task[:good]
        self.steps_done = sum(self.steps_by_task) if damaged is not None else s["steps_done"]
        self.elapsed_before, self.next_task = s["elapsed_s"], good
        # Every phase reseeds from (seed, phase, task), so restoring the RNG of a later task is harmless.
        runtime.restore_rng(s["rng"])

    # -- one task -----------------------------------------------------------------------------------------

    def _loader(self, samples, *, train: bool, seed_parts: tuple):
        from delo.data import make_loader

        bs = self.cfg.train.batch_size if train else self.cfg.eval.batch_size
        return make_loader(
            samples,
            self.backbone,
            bs,
            shuffle=train,
            seed=runtime.derive_seed(self.cfg.seed, *seed_parts),
            num_workers=self.cfg.data.num_workers,
            num_labels=self.bench.num_labels if self.bench.multilabel else None,
        )

    def train(self, k: int, tb) -> dict[str, float]:
        self._begin(k)
        loader = self._loader(self.bench.split(k, "train"), train=True, seed_parts=("shuffle", k))
        probe = (
            self._probe_batch(k)
            if self.cfg.debug.diagnostics and isinstance(self.model, RoutingDiagnostics)
            else None
        )
        # ViLT draws a random patch order from the global torch RNG on every forward
        runtime.seed_everything(runtime.derive_seed(self.cfg.seed, "train", k))
        losses = train_task(
            self.model,
            loader,
            k,
            self.cfg,
            self.device,
            self.steps_done,
            tb,
            self.progress,
            label=f"task {k + 1}/{self.T}",
            probe=probe,
        )
        # statistics a method accumulates at a task's end (importance, ...), from the same data, seeded
        runtime.seed_everything(runtime.derive_seed(self.cfg.seed, "end_task", k))
        self.model.end_task(
            k, lambda: self._loader(self.bench.split(k, "train"), train=False, seed_parts=("end", k))
        )
        self.steps_done += losses["train_steps"]
        self.steps_by_task.append(losses["train_steps"])
        return losses

    def _probe_batch(self, k: int) -> dict:
        """The first PROBE_SIZE train samples of task k (by uid), one fixed batch for the routing diagnostics."""
        samples = self.bench.split(k, "train")[:PROBE_SIZE]
        loader = self._loader(samples, train=False, seed_parts=("probe", k))
        return runtime.move_batch(next(iter(loader)), self.device)

    def evaluate(self, j: int) -> dict[str, Any] | None:
        """Fill row j of every split's matrices; returns the routing stats of the first split's forwards."""
        stats = None
        self.model.eval()
        routes = isinstance(self.model, RoutingDiagnostics)
        for n, split in enumerate(self.splits):
            if routes:
                self.model.enable_routing_stats(n == 0)
            for i in range(j + 1):
                runtime.seed_everything(runtime.derive_seed(self.cfg.seed, "eval", split, j, i))
                loader = self._loader(self.bench.split(i, split), train=False, seed_parts=("eval", split, i))
                # task i < j is frozen since row i: reuse that row's predictions (eval.reuse_frozen)
                frozen = i < j and self.cfg.eval.reuse_frozen and self.model.frozen_after_task
                reuse = self.reuse.get((split, i)) if frozen else None
                outcomes, self.reuse[(split, i)] = evaluate_task(
                    self.model, loader, self.bench.task_classes[i], self.bench.multilabel, self.device, reuse
                )
                self.books[split].fill(j, i, outcomes)
            if n == 0 and routes:
                stats = self.model.routing_stats()
        if routes:
            self.model.enable_routing_stats(False)
        return stats

    def report(self, j: int, losses: dict[str, float], times: dict[str, float]) -> dict[str, Any]:
        book = self.books[self.splits[0]]
        metrics = {
            TASK: j + 1,
            **book.task_metrics(j),
            **times,
            **{k: v for k, v in losses.items() if k != "train_steps"},
        }
        if self.cfg.eval.test:
            metrics.update(self.books["test"].task_metrics(j, prefix="test_"))
        if j == self.T - 1:
            metrics.update(book.final_metrics())
            if self.cfg.eval.test:
                metrics.update(self.books["test"].final_metrics(prefix=TEST_PREFIX))
        return metrics

    def save(self, j: int) -> None:
        checkpoint.save_task(self.ckpt_dir, j, self.model.task_state(j))
        checkpoint.save_state(
            self.ckpt_dir,
            {
                "next_task": j + 1,
                "num_tasks": self.T,
                "rng": runtime.capture_rng(),
                "results": {s: b.data for s, b in self.books.items()},
                "history": self.history,
                "steps_done": self.steps_done,
                "steps_by_task": list(self.steps_by_task),
                "elapsed_s": self.elapsed(),
                "config": self.cfg.to_dict(),
                "config_hash": self.cfg.hash(),
                "fingerprint": self.bench.fingerprint,
            },
        )

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    # -- result.json --------------------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        main = self.books[self.splits[0]].summary()
        result: dict[str, Any] = {
            "split": self.splits[0],
            **main,
            "params": _param_counts(self.model),
            "config": self.cfg.to_dict(),
            "config_hash": self.cfg.hash(),
            "fingerprint": self.bench.fingerprint,
            "num_tasks": self.T,
            "history": [_json_safe(h) for h in self.history],
        }
        if self.cfg.eval.test:
            result.update({f"test_{k}": v for k, v in self.books["test"].summary().items()})
        result["wall_time_s"] = round(self.elapsed(), 3)
        result["provenance"] = provenance.finish(self.provenance)
        return result


def run_continual(
    cfg: RunConfig, out_dir: str | Path, on_task_end: OnTaskEnd | None = None, *, progress: bool = False
) -> dict[str, Any]:
    """Train and evaluate all tasks (resuming from ``out_dir/checkpoints``); returns the result.json dict.

    ``on_task_end(metrics, ckpt_dir)`` is called once per task after its checkpoint is written and TensorBoard
    is flushed. Before the last call, ``out_dir/result.json`` and the TensorBoard session end are already written
    (a Tune trial never runs code after its final report).
    """
    from delo.tblog import TBLogger

    run = _Run(cfg, out_dir, progress)
    out_dir = run.out_dir
    if run.next_task >= run.T:  # already complete
        return _finish(run, out_dir)
    tb = TBLogger(out_dir / "tb", cfg.to_dict(), trial_id=out_dir.name)
    try:
        for k in range(run.next_task, run.T):
            t0 = time.perf_counter()
            losses = run.train(k, tb)
            t1 = time.perf_counter()
            stats = run.evaluate(k)
            t2 = time.perf_counter()
            metrics = run.report(
                k, losses, {"task_time_s": t2 - t0, "train_time_s": t1 - t0, "eval_time_s": t2 - t1}
            )
            run.history.append(metrics)
            run.save(k)
            _log_task(tb, run, k, metrics, stats)
            if k == run.T - 1:
                result = _finish(run, out_dir)
                tb.session_end({key: v for key, v in metrics.items() if is_final(key)}, step=k + 1)
            tb.flush()
            if on_task_end is not None:
                on_task_end(dict(metrics), run.ckpt_dir)
            if cfg.debug.fail_at_task == k + 1:
                raise RuntimeError(f"injected failure after task {k + 1}")
    finally:
        tb.close()
    return result


def _rows_before(data: dict[str, Any], rows: int) -> dict[str, Any]:
    """Result matrices with the rows from ``rows`` on emptied (a rewound run fills them again)."""
    from delo import metrics

    out = {}
    for name, matrix in data.items():
        blank = metrics.empty_matrix(len(matrix))
        out[name] = [list(row) if j < rows else blank[j] for j, row in enumerate(matrix)]
    return out


def _finish(run: _Run, out_dir: Path) -> dict[str, Any]:
    result = run.result()
    write_json_atomic(out_dir / "result.json", result)
    return result


def _log_task(tb, run: _Run, k: int, metrics: dict[str, Any], stats) -> None:
    tb.scalars({key: v for key, v in metrics.items() if not is_final(key)}, step=k + 1)
    for split, book in run.books.items():
        prefix = "test" if split == "test" and split != run.splits[0] else "val"
        tb.matrix(
            f"{prefix}/result_matrix",
            book.data["matrix"][: k + 1],
            k + 1,
            title=f"{split} after task {k + 1}",
        )
        # the tasks seen so far: % of each true task's samples (rows) by the task inferred for them (columns)
        routing = [row[: k + 1] for row in book.data[TASK_ROUTING][: k + 1]]
        tb.matrix(
            f"{prefix}/task_routing",
            row_shares(routing),
            k + 1,
            title=f"{split} routing after task {k + 1}",
        )
    tb.routing(stats, k + 1)


def _param_counts(model) -> dict[str, int]:
    return {name: int(n) for name, n in model.parameter_counts().items()}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic_write_json(path, _json_safe(data), indent=2, sort_keys=False, allow_nan=False, default=None)


# ----------------------------------------------------------------------------------------------------------
# Command line (launch/train.py)
