"""Write sweeps/methods_tuned.yaml from the equal-budget searches (see delo.cli.tuned): python launch/tuned.py."""

import sys

from delo.cli import tuned as main

if __name__ == "__main__":
    sys.exit(main())
