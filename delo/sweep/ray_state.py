"""Ray Tune's own experiment files, checked before ``Tuner.restore`` reads them (Ray seam).

Tune writes its state (``tuner.pkl``, ``experiment_state-*.json``, the searcher's pickles) atomically into a
driver staging folder under Ray's temp root, then copies that folder into the experiment folder with plain,
non-atomic copies. A driver killed during the copy leaves a truncated file in the experiment folder, and
``Tuner.restore`` then dies in Ray's unpickler (EOFError) or, worse, Tune restarts the experiment with whatever
trials it could read. So ``--resume`` checks the newest file of every kind first, the way Tune picks them
(the greatest name), and:

- replaces a damaged one with the intact staging copy of the same name when one is still on this machine
  (one ``warning:`` line names both files);
- otherwise raises ``DamagedFileError`` (exit 2) naming the file, before anything is restored.

Then :func:`align_trials_with_state` makes the trial folders say what that snapshot knows. Tune snapshots its
state now and then, while trials go on writing: a driver killed between two snapshots leaves trial folders ahead
of the state Tune restores (rows of tasks the restored trial will train and report again, folders of trials the
snapshot never saw, which Tune would recreate beside the old one under a suffixed name).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from delo.atomic import atomic_write, atomic_write_text
from delo.config import DamagedFileError, reader_error
from delo.metric_keys import TASK
from delo.sweep.experiment import TRIAL_INFO, TUNE_RESULT, TUNE_STATE_GLOB

#: the files ``Tuner.restore`` reads, by glob; of each, Tune reads the greatest name
PATTERNS = (
    "tuner.pkl",
    "experiment_state-*.json",
    "basic-variant-state-*.json",
    "search_gen_state-*.json",
    "searcher-state-*.pkl",
)


def problem_of(path: Path) -> str | None:
    """What is wrong with one of Tune's state files, or None when it loads as Tune will load it."""
    import ray.cloudpickle as cloudpickle
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    try:
        data = path.read_bytes()
        if not data:
            return "empty"
        if path.name.startswith("experiment_state-"):
            _loads_with_cloudpickle(data)
        else:
            cloudpickle.loads(data)
    except Exception as exc:  # any failure to load is what Tune would hit
        return reader_error(exc) or type(exc).__name__
    return None


def staging_copies(exp_dir: Path, name: str, ray_temp_root: Path | None) -> list[Path]:
    """Tune's driver staging copies of ``name`` for this experiment under Ray's temp root, newest first."""
    if ray_temp_root is None or not ray_temp_root.is_dir():
        return []
    found = ray_temp_root.glob(f"session_*/artifacts/*/{exp_dir.name}/driver_artifacts/{name}")
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def ray_temp_root() -> Path | None:
    """The folder holding Ray's ``session_*`` folders of the running Ray (None when Ray is not initialised)."""
    import ray

    if not ray.is_initialized():
        return None
    node = ray._private.worker.global_worker.node  # the session of the Ray this driver joined
    return Path(node.get_session_dir_path()).parent


def repair_ray_state(exp_dir: Path, ray_temp: Path | None) -> list[str]:
    """Check the newest file of each kind in ``exp_dir``; repair from staging or raise DamagedFileError.

    Returns the warning lines printed (one per repaired file).
    """
    warnings = []
    for pattern in PATTERNS:
        files = sorted(exp_dir.glob(pattern))
        if not files:
            continue
        newest = files[-1]  # Tune's choice (max of the names)
        problem = problem_of(newest)
        if problem is None:
            continue
        intact = next(
            (c for c in staging_copies(exp_dir, newest.name, ray_temp) if problem_of(c) is None), None
        )
        if intact is None:
            raise DamagedFileError(
                newest,
                problem,
                "Ray Tune's copy of the sweep state was cut short (the driver died while copying it) and no "
                f"intact copy is left under Ray's temp folder, so --resume cannot continue this sweep. Finished "
                f"trials' results stay readable in {exp_dir} (delo-summarize); start the sweep again with another "
                "--storage (or move the folder away)",
            )
        payload = intact.read_bytes()
        atomic_write(newest, lambda fh, data=payload: fh.write(data), binary=True)
        line = f"warning: {newest}: damaged ({problem}); replaced by Ray's intact staging copy {intact}"
        print(line, file=sys.stderr, flush=True)
        warnings.append(line)
    return warnings


@dataclass
class RestoredTrial:
    """A trial as the experiment state Tune restores knows it."""

    folder: str | None
    """Its folder's name (None: it had not started)."""
    last_task: int
    """The last task it had reported (0: none). A trial reports a checkpoint with every task, so the restored
    trial goes on after this one."""
    checkpoints: list[Path]
    """The checkpoint folders its checkpoint manager keeps."""
    latest: Path | None
    """The one Tune restores it from (None: it starts over)."""


def restored_trials(exp_dir: Path) -> dict[str, RestoredTrial]:
    """Every trial of the newest experiment state (the one Tune restores), by trial id."""
    from ray.tune.utils.serialization import TuneFunctionDecoder

    states = sorted(exp_dir.glob(TUNE_STATE_GLOB))
    if not states:
        return {}
    out = {}
    for trial_json, meta_json in json.loads(states[-1].read_text())["trial_data"]:
        trial = json.loads(trial_json)
        # the user's own experiment folder, which Tune.restore unpickles next anyway
        meta = json.loads(meta_json, cls=TuneFunctionDecoder, allow_cloudpickle=True)
        manager = meta.get("checkpoint_manager")
        kept = [Path(r.checkpoint.path) for r in getattr(manager, "_checkpoint_results", []) if r.checkpoint]
        latest = getattr(manager, "_latest_checkpoint_result", None)
        latest = Path(latest.checkpoint.path) if latest is not None and latest.checkpoint else None
        last = (meta.get("last_result") or {}).get(TASK) or 0
        out[trial["trial_id"]] = RestoredTrial(trial.get("relative_logdir"), last, kept, latest)
    return out


def align_trials_with_state(exp_dir: Path, ray_temp: Path | None = None) -> list[str]:
    """Before a restore, make every trial folder (and its copy in Tune's driver staging folder, which a driver
    joining the same Ray session reuses) what the restored state knows:

    - a trial folder the state does not name is removed (the trial starts over, or the state never saw it; the
      folder holds only the lost attempt, and Tune would otherwise make a second folder with a suffixed name);
    - Tune's rows (result.json, progress.csv) after the last task the state knows are cut, with rows cut short by
      the killed driver (the trial reports those tasks again: they would be there twice);
    - a checkpoint folder the state keeps but the killed driver had already deleted (it kept only the newest
      ``num_to_keep``) is made again, empty: Ray 2.60 deletes it at the trial's next checkpoint and fails to
      register that checkpoint when it is not there. When that was the one the trial is restored from, the
      trial starts over (an empty checkpoint), and all its rows are cut.

    Returns the warning lines printed (one per folder changed)."""
    known = restored_trials(exp_dir)
    if not known:
        return []
    folders = {t.folder: t for t in known.values() if t.folder}
    warnings = []
    for folder in sorted(p for p in exp_dir.iterdir() if p.is_dir() and _is_trial_folder(p)):
        trial = folders.get(folder.name)
        staged = _staging_trial_dirs(exp_dir, folder.name, ray_temp)
        if trial is None:
            for path in (folder, *staged):
                shutil.rmtree(path)
            warnings.append(f"warning: {folder}: a trial attempt Tune's restored state does not know (a driver "
                            "killed between Tune's snapshots); removed, the trial runs again")  # fmt: skip
            continue
        # The killed driver kept only the newest num_to_keep checkpoints; the one the state restores from may be
        # among those it deleted since, and then the trial starts over (from an empty checkpoint).
        last = trial.last_task if trial.latest is None or trial.latest.exists() else 0
        for checkpoint in trial.checkpoints:
            if checkpoint.parent == folder and not checkpoint.exists():
                checkpoint.mkdir()
        cut = [_cut_rows(path, last) for path in (folder, *staged)]  # every copy, not the first alone
        if any(cut):
            warnings.append(
                f"warning: {folder}: Tune's rows after task {last} cut (the trial reports them again)"
            )
    for line in warnings:
        print(line, file=sys.stderr, flush=True)
    return warnings


def _is_trial_folder(path: Path) -> bool:
    """A folder Tune or a trial made: its files are theirs, or it is empty (Tune made it, the trial had not
    started). Anything else under the experiment folder (a user's screenshots) is left alone."""
    names = {p.name for p in path.iterdir()}
    return not names or bool(names & {TRIAL_INFO, TUNE_RESULT, "params.json", "progress.csv"})


def _staging_trial_dirs(exp_dir: Path, trial: str, ray_temp: Path | None) -> list[Path]:
    """The trial's folders in Tune's driver staging area of this Ray (``staging_copies``' layout)."""
    if ray_temp is None or not ray_temp.is_dir():
        return []
    found = ray_temp.glob(f"session_*/artifacts/*/{exp_dir.name}/driver_artifacts/{trial}")
    return sorted({p.resolve() for p in found})  # session_latest links to the newest session_<id>


def _cut_rows(folder: Path, last: int) -> bool:
    """Keep the rows of tasks <= ``last`` in result.json and progress.csv; whether anything was cut."""
    changed = False
    rows_file = folder / TUNE_RESULT
    if rows_file.is_file():
        lines = rows_file.read_text(errors="replace").splitlines()
        kept = [line for line in lines if _row_task(line) is not None and _row_task(line) <= last]
        if kept != lines:
            atomic_write_text(rows_file, "".join(line + "\n" for line in kept))
            changed = True
    progress = folder / "progress.csv"
    if progress.is_file():
        rows = list(csv.reader(io.StringIO(progress.read_text(errors="replace"))))
        if rows and TASK in rows[0]:
            at = rows[0].index(TASK)
            kept = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and _int(r[at]) is not None
                                and _int(r[at]) <= last]  # fmt: skip
            if kept != rows:
                out = io.StringIO()
                csv.writer(out).writerows(kept)
                atomic_write_text(progress, out.getvalue())
                changed = True
    return changed


def _row_task(line: str) -> int | None:
    try:
        return int(json.loads(line)[TASK])
    except (ValueError, KeyError, TypeError):  # cut short by the killed driver, or not a task report
        return None


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None
