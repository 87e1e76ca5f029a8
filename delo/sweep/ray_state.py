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
"""

from __future__ import annotations

import sys
from pathlib import Path

from delo.atomic import atomic_write
from delo.config import DamagedFileError, reader_error

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
