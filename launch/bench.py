"""Measure the performance figures as JSON (see delo.cli.bench): python launch/bench.py [--quick] --out FILE.json.

A shim kept for the README's commands; the installed console script is `delo-bench`.
"""

import sys

from delo.cli import bench as main

if __name__ == "__main__":
    sys.exit(main())
