"""Run a sweep spec on Ray Tune: python launch/sweep.py SPEC [--set key=value ...] [--address ADDR] [--resume]
[--dry-run] [--storage DIR] [--profile NAME].

Exit status: 0 done, 1 some trials failed (listed in results.md), 2 bad spec/override/input (nothing started),
130 interrupted (rerun the same command with --resume).
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="run-config override (model.E=32) or spec field (grid.seeds=[0], search.num_samples=8); repeatable")
    p.add_argument("--profile", help="run-config profile replacing base.file: a name in sweeps/profiles (food101) or a path")
    p.add_argument("--address", help="join a running Ray cluster (auto, or host:6379) instead of starting a local one")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep (same spec, same settings)")
    p.add_argument("--dry-run", action="store_true", help="print the trials (grid) or the search space, then exit")
    p.add_argument("--storage", help="results root (default: ./sweep_results, or the spec's storage)")
    p.add_argument("--dashboard-port", type=int, default=8265, help="local Ray dashboard port on 127.0.0.1 (0: none)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
    args = p.parse_args(argv)

    from delo.sweep.driver import launch

    return launch(args.spec, args.sets, profile=args.profile, address=args.address, resume=args.resume,
                  dry_run=args.dry_run, storage=args.storage, dashboard_port=args.dashboard_port,
                  num_cpus=args.num_cpus)


if __name__ == "__main__":
    sys.exit(main())
