"""Train and evaluate one continual run: python launch/train.py [CONFIG.yaml] [--set key=value ...] --out DIR.

Without arguments it runs the embedded synthetic benchmark with the `tiny` backbone. A bad config, a missing
backbone or missing data exits with status 2 before any training. Re-running with the same --out resumes.
"""

import argparse
import sys

from delo.train import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="run config YAML (default: sweeps/profiles/synthetic.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, e.g. --set model.E=8 (repeatable)")
    parser.add_argument("--out", help="run folder (default: runs/<timestamp>); an existing one is resumed")
    args = parser.parse_args(argv)
    return cli(args.config, args.overrides, args.out)


if __name__ == "__main__":
    sys.exit(main())
