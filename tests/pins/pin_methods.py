"""Every method's metrics on the tiny_test profile, pinned: a refactor of the method layer must leave them
bit-identical. ``python tests/pins/pin_methods.py`` rewrites ``method_metrics.json`` (only when a change is meant
to move the numbers, e.g. a new embedded world; say so in the commit)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

PINS = Path(__file__).with_name("method_metrics.json")
PROFILE = Path(__file__).resolve().parents[2] / "sweeps" / "profiles" / "tiny_test.yaml"
OVERRIDES = ("train.threads=1", "eval.test=false")
VOLATILE = ("_time_s", "wall_time_s")


def method_metrics(method: str, out_dir: Path) -> dict:
    """The run's metrics without timings or the config echo: what must not move."""
    from delo.config import load_config
    from delo.data import prepare_data
    from delo.train import run_continual

    cfg = load_config(PROFILE, overrides=[*OVERRIDES, f"model.method={method}"])
    prepare_data(cfg)
    result = run_continual(cfg, out_dir)
    keep = {k: v for k, v in result.items() if k not in ("config", "history", "wall_time_s", "provenance")}
    keep["history"] = [
        {k: v for k, v in row.items() if not k.endswith(VOLATILE)} for row in result["history"]
    ]
    return json.loads(json.dumps(keep))  # JSON's float repr round-trips exactly


def methods() -> list[str]:
    from delo.methods.registry import METHOD_NAMES

    return list(METHOD_NAMES)


if __name__ == "__main__":
    os.environ.setdefault("DELO_CACHE", tempfile.mkdtemp(prefix="delo-pin-"))
    pins = {}
    for m in methods():
        with tempfile.TemporaryDirectory() as tmp:
            pins[m] = method_metrics(m, Path(tmp))
        print(m, pins[m].get("final_ap"), file=sys.stderr)
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
