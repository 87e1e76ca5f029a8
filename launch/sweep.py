"""Run a sweep spec on Ray Tune (see delo.cli.sweep): python launch/sweep.py SPEC [--set key=value ...] [--resume] [--dry-run].

A shim kept for the README's commands; the installed console script is `delo-sweep`.
"""

import sys

from delo.cli import sweep as main

if __name__ == "__main__":
    sys.exit(main())
