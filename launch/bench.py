"""Measure the performance figures (issue 7) and write them as JSON: python launch/bench.py [--quick] --out FILE.json.

Every time figure is a ratio of two workloads interleaved in one process (medians of several repeats), so a
machine shared with other jobs slows both sides alike. --quick shrinks repeats and sizes (under a minute on 2
cores; the test suite runs it); the full run takes a few minutes. See delo/bench.py for what each figure is.
Exit status: 0 done, 1 some figure failed (its entry holds the error; the others are written), 2 bad --only.
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes (a smoke run)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for the ratio figures (default 1)"
    )
    parser.add_argument(
        "--only", action="append", metavar="FIGURE", help="measure only this figure (repeatable)"
    )
    args = parser.parse_args(argv)

    from delo.atomic import atomic_write_json
    from delo.bench import run_all

    try:
        result = run_all(args.quick, args.threads, args.only, log=lambda line: print(line, file=sys.stderr))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    atomic_write_json(out, result, indent=2, sort_keys=False, default=None)
    print(f"wrote {out}")
    failed = [name for name, figure in result.items() if isinstance(figure, dict) and "error" in figure]
    if failed:
        print(f"error: figures failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
