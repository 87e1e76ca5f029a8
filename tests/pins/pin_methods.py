"""Every method's metrics on the tiny_test profile, pinned: a refactor of the method layer must leave them
bit-identical. ``python tests/pins/pin_methods.py`` rewrites ``method_metrics.json`` (only when a change is meant
to move the numbers, e.g. a new embedded world; say so in the commit); ``--only m1,m2`` recomputes those methods
alone and keeps every other entry as it is on disk (a change meant to move some methods' numbers only).

The config hash is not pinned: it hashes the whole schema, so a new key of any method changes it for every method
without moving a number. Entries written before this rule still carry it; :func:`load_pins` drops it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

PINS = Path(__file__).with_name("method_metrics.json")
PROFILE = Path(__file__).resolve().parents[2] / "sweeps" / "profiles" / "tiny_test.yaml"
OVERRIDES = ("train.threads=1", "eval.test=false")
VOLATILE = ("_time_s", "wall_time_s")
UNPINNED = ("config", "history", "wall_time_s", "config_hash", "provenance")


def method_metrics(method: str, out_dir: Path) -> dict:
    """The run's metrics without timings, the config echo or its hash: what must not move."""
    from delo.config import load_config
    from delo.data import prepare_data
    from delo.train import run_continual

    cfg = load_config(PROFILE, overrides=[*OVERRIDES, f"model.method={method}"])
    prepare_data(cfg)
    result = run_continual(cfg, out_dir)
    keep = {k: v for k, v in result.items() if k not in UNPINNED}
    keep["history"] = [
        {k: v for k, v in row.items() if not k.endswith(VOLATILE)} for row in result["history"]
    ]
    return json.loads(json.dumps(keep))  # JSON's float repr round-trips exactly


def load_pins() -> dict[str, dict]:
    """The pinned metrics by method, as :func:`method_metrics` returns them (no config hash)."""
    pins = json.loads(PINS.read_text())
    return {m: {k: v for k, v in entry.items() if k != "config_hash"} for m, entry in pins.items()}


def methods() -> list[str]:
    from delo.methods.registry import METHOD_NAMES

    return list(METHOD_NAMES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", help="comma-separated methods to recompute; every other entry stays as it is on disk"
    )
    args = parser.parse_args(argv)
    chosen = methods() if args.only is None else [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(methods()))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(methods())}")
    os.environ.setdefault("DELO_CACHE", tempfile.mkdtemp(prefix="delo-pin-"))
    pins = json.loads(PINS.read_text()) if args.only is not None and PINS.exists() else {}
    for m in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            pins[m] = method_metrics(m, Path(tmp))
        print(m, "ap", pins[m].get("ap"), file=sys.stderr)
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
