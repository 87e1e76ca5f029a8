"""Rebuild a sweep's results.csv, results.md and plots from its folder: python launch/summarize.py SWEEP_DIR."""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("sweep_dir", help="the experiment folder, e.g. sweep_results/rank_factor")
    args = p.parse_args(argv)
    folder = Path(args.sweep_dir)
    if not folder.is_dir():
        print(f"error: {folder}: no such sweep folder", file=sys.stderr)
        return 2

    from delo.sweep.report import write_report

    for path in write_report(folder):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
