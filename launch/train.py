"""Train and evaluate one continual run (see delo.cli.train): python launch/train.py [CONFIG.yaml] [--set key=value ...] --out DIR.

A shim kept for the README's commands; the installed console script is `delo-train`.
"""

import sys

from delo.cli import train as main

if __name__ == "__main__":
    sys.exit(main())
