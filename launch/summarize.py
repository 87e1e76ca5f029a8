"""Rebuild a sweep's results.csv, results.md and plots from its folder (see delo.cli.summarize): python launch/summarize.py SWEEP_DIR.

A shim kept for the README's commands; the installed console script is `delo-summarize`.
"""

import sys

from delo.cli import summarize as main

if __name__ == "__main__":
    sys.exit(main())
