"""Run a drill at cluster scale on this machine (see delo.cli.drill): python launch/drill.py chaos|nodes|asha.

chaos: trial workers and the driver SIGKILLed under a grid (or --search), the driver resumed with --resume;
nodes: a worker node removed mid-sweep and a new one joining; asha: ASHA's rung decisions on a 64-sample search.
Each prints a summary (kills, trials, equality) and exits 0 when every check passed, 1 otherwise.
"""

import sys

from delo.cli import drill as main

if __name__ == "__main__":
    sys.exit(main())
