"""Atomic file writes: a temp file in the same folder, fsync, then ``os.replace`` over the target.

The project's one text, JSON and YAML writer. Shared caches, checkpoints, results, reports and sweep
bookkeeping all go through here, so a crash or a concurrent
writer never leaves a half-written file where a reader looks: readers see the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Call ``write(fh)`` on a fresh temp file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        # mkstemp creates 0600 whatever the umask; a plain open() would give 0666 & ~umask, which is what a
        # colleague or a dashboard under another user on shared storage needs to read results
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"
"""A temp file is ``.<target name>.<random>.tmp`` beside its target."""


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files a killed writer left in ``folder`` (not below it); returns them. Only the folder's
    one writer may call this (a live writer's temp file would vanish under it): a run for its own folder as it
    starts, a sweep driver for its experiment folder under its lock."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    left = sorted(
        p
        for p in folder.iterdir()
        if p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX) and p.is_file()
    )
    for path in left:
        path.unlink(missing_ok=True)
    return left


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which would race
    with other threads creating files); falls back to that on systems without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def atomic_write_json(
    path: str | Path, data: Any, *, indent: int | None = 1, sort_keys: bool = True, **dumps
) -> None:
    """``data`` as JSON and a final newline; ``dumps`` go to ``json.dumps`` (``default=str`` unless given, so
    paths and the like become strings; ``default=None`` makes them an error)."""
    import json

    dumps.setdefault("default", str)
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys, **dumps) + "\n")


def atomic_write_yaml(path: str | Path, data: Any, *, sort_keys: bool = True) -> None:
    """``data`` as YAML; a JSON round trip first turns paths, numpy scalars and the like into plain values."""
    import json

    import yaml

    atomic_write_text(path, yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=sort_keys))
