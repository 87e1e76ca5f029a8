"""The command-line tools: ``delo-train``, ``delo-sweep``, ``delo-summarize`` and ``delo-bench`` (console scripts
in pyproject.toml) and ``launch/{train,sweep,summarize,bench}.py``, which are thin shims over these functions;
``launch/drill.py`` calls :func:`drill`.

Each ``main`` takes ``argv`` (None: the process's arguments) and returns the exit status: 2 for bad input
before anything runs. Heavy imports happen after argument parsing, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def train(argv: list[str] | None = None) -> int:
    """Train and evaluate one continual run: delo-train [CONFIG.yaml] [--set key=value ...] --out DIR.

    Without arguments it runs the embedded synthetic benchmark with the `tiny` backbone. A bad config, a missing
    backbone or missing data exits with status 2 before any training. Re-running with the same --out resumes.
    """
    parser = argparse.ArgumentParser(description=train.__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="run config YAML (default: sweeps/profiles/synthetic.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set model.E=8 (repeatable)",
    )
    parser.add_argument("--out", help="run folder (default: runs/<timestamp>); an existing one is resumed")
    args = parser.parse_args(argv)

    from delo import runtime
    from delo.config import DEFAULT_PROFILE, ConfigError, load_config
    from delo.evaluate import format_summary
    from delo.train import run_continual

    try:
        cfg = load_config(args.config or DEFAULT_PROFILE, args.overrides)
        from delo.data import prepare_data
        from delo.folderlock import FolderLock, remove_if_only_lock
        from delo.vilt.backbone import check_backbone_available

        check_backbone_available(cfg.model.backbone)
        prepare_data(cfg)  # every input is checked before the run folder exists (a refusal leaves nothing)
        out = Path(args.out) if args.out else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        created = not out.exists()
        # one writer per folder: a second run on it would mix its checkpoints and result.json with this one's
        with FolderLock(out, "run", "use another --out"):
            print(
                f"run folder: {out}  (config hash {cfg.hash()}, {runtime.available_cpus()} CPUs)",
                file=sys.stderr,
            )
            try:
                result = run_continual(cfg, out, progress=True)
            except (ConfigError, FileNotFoundError):
                if created:  # refused before anything was written: no folder with a lock file alone
                    remove_if_only_lock(out)
                raise
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(result))
    print(f"\nwrote {out / 'result.json'}")
    return 0


def sweep(argv: list[str] | None = None) -> int:
    """Run a sweep spec on Ray Tune: delo-sweep SPEC [--set key=value ...] [--address ADDR] [--resume]
    [--dry-run] [--storage DIR] [--profile NAME].

    Exit status: 0 done, 1 some trials failed (listed in results.md), 2 bad spec/override/input (nothing started),
    130 interrupted (rerun the same command with --resume).
    """
    p = argparse.ArgumentParser(
        description=sweep.__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("spec", help="sweep spec YAML (sweeps/*.yaml)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run-config override (model.E=32) or spec field (grid.seeds=[0], search.num_samples=8); repeatable",
    )
    p.add_argument(
        "--profile",
        help="run-config profile replacing base.file: a name in sweeps/profiles (food101) or a path",
    )
    p.add_argument(
        "--address", help="join a running Ray cluster (auto, or host:6379) instead of starting a local one"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted sweep (same spec, same settings)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the trials (grid) or the search space, then exit"
    )
    p.add_argument("--storage", help="results root (default: ./sweep_results, or the spec's storage)")
    p.add_argument(
        "--dashboard-port", type=int, default=8265, help="local Ray dashboard port on 127.0.0.1 (0: none)"
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
    cost = p.add_mutually_exclusive_group()
    cost.add_argument(
        "--calibrate",
        action="store_true",
        help="with --dry-run: estimate each trial's time from a few measured steps of the base config here",
    )
    cost.add_argument(
        "--estimate-from",
        metavar="DIR",
        help="with --dry-run: estimate each trial's time from an earlier sweep folder's measured trial times",
    )
    args = p.parse_args(argv)
    if (args.calibrate or args.estimate_from) and not args.dry_run:
        print(
            "error: --calibrate and --estimate-from go with --dry-run (they estimate, nothing runs)",
            file=sys.stderr,
        )
        return 2

    from delo.sweep.driver import launch

    return launch(
        args.spec,
        args.sets,
        profile=args.profile,
        address=args.address,
        resume=args.resume,
        dry_run=args.dry_run,
        storage=args.storage,
        dashboard_port=args.dashboard_port,
        num_cpus=args.num_cpus,
        calibrate=args.calibrate,
        estimate_from=args.estimate_from,
    )


def summarize(argv: list[str] | None = None) -> int:
    """Rebuild a sweep's results.csv, results.md, results.tex and plots from its folder: delo-summarize SWEEP_DIR.
    With a second folder, compare two sweeps of the same grid: delo-summarize A B [--out FILE] writes B against A
    (per cell both means and B - A with its 95 % CI, paired by seed)."""
    p = argparse.ArgumentParser(description=summarize.__doc__)
    p.add_argument("sweep_dir", help="the experiment folder, e.g. sweep_results/rank_factor")
    p.add_argument(
        "other",
        nargs="?",
        help="a second sweep folder of the same grid: compare it (B) against the first (A)",
    )
    p.add_argument("--out", help="where the comparison goes (default: B/comparison.md)")
    args = p.parse_args(argv)
    folders = [Path(f) for f in (args.sweep_dir, args.other) if f is not None]
    for folder in folders:
        if not folder.is_dir():
            print(f"error: {folder}: no such sweep folder", file=sys.stderr)
            return 2
    if args.other is not None:
        return _compare(*folders, Path(args.out) if args.out else folders[1] / "comparison.md")
    folder = folders[0]

    from delo.config import ConfigError
    from delo.sweep.records import collect
    from delo.sweep.report import mixed_code_warning, write_report

    try:
        paths = write_report(folder)
        warning = mixed_code_warning(collect(folder))
    except ConfigError as exc:  # a damaged file in the folder: DamagedFileError names it and the remedy
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    for path in paths:
        print(path)
    return 0


def _compare(a: Path, b: Path, out: Path) -> int:
    from delo.atomic import atomic_write_text
    from delo.config import ConfigError
    from delo.sweep.compare import comparison

    try:
        text = comparison(a, b)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(out, text)
    print(out)
    return 0


def bench(argv: list[str] | None = None) -> int:
    """Measure the performance figures (issue 7) and write them as JSON: delo-bench [--quick] --out FILE.json.

    Every time figure is a ratio of two workloads interleaved in one process (medians of several repeats), so a
    machine shared with other jobs slows both sides alike. --quick shrinks repeats and sizes (under a minute on
    2 cores; the test suite runs it); the full run takes a few minutes. See delo/tools/bench.py for what each figure
    is. Exit status: 0 done, 1 some figure failed (its entry holds the error; the others are written), 2 bad
    --only.
    """
    parser = argparse.ArgumentParser(description=bench.__doc__.splitlines()[0])
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
    from delo.tools.bench import run_all

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


def drill(argv: list[str] | None = None) -> int:
    """Run a drill at cluster scale on this machine (delo/tools/drill.py): launch/drill.py chaos|nodes|asha.

    chaos: trial workers and the driver SIGKILLed under a grid (or --search), the driver resumed with --resume;
    nodes: a worker node removed mid-sweep and a new one joining; asha: ASHA's rung decisions on a search. Each
    prints a summary (kills, trials, equality with undisturbed runs) and exits 0 when every check passed, 1 when
    some failed (listed).
    """
    p = argparse.ArgumentParser(description=drill.__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="drill", required=True)
    c = sub.add_parser("chaos", help="kill trial workers and the driver under a sweep")
    c.add_argument("--trials", type=int, default=16)
    c.add_argument(
        "--kills", type=int, default=6, help="trial workers to kill (the driver dies once besides)"
    )
    c.add_argument("--interval", type=float, default=3.0, help="mean seconds between kills")
    c.add_argument("--search", action="store_true", help="an Optuna + ASHA search instead of a grid")
    c.add_argument("--seed", type=int, default=0)
    n = sub.add_parser("nodes", help="a worker node leaves mid-sweep and a new one joins")
    n.add_argument("--trials", type=int, default=8)
    a = sub.add_parser("asha", help="ASHA's rung decisions and the best trial on a large search")
    a.add_argument("--samples", type=int, default=64)
    a.add_argument("--tasks", type=int, default=5)
    a.add_argument("--grace", type=int, default=1)
    a.add_argument("--seed", type=int, default=0)
    for parser in (c, n, a):
        parser.add_argument(
            "--workdir", type=Path, help="keep the sweeps here (default: a temp dir, removed)"
        )
        parser.add_argument("--out", type=Path, help="write the summary as JSON")
    args = p.parse_args(argv)
    small = {"--trials": getattr(args, "trials", 2), "--samples": getattr(args, "samples", 2),
             "--kills": getattr(args, "kills", 1)}  # fmt: skip
    wrong = [f"{flag} {value}" for flag, value in small.items() if value < (1 if flag == "--kills" else 2)]
    if wrong:
        print(
            f"error: {', '.join(wrong)}: a drill needs 2 trials or more and 1 kill or more", file=sys.stderr
        )
        return 2

    from delo.atomic import atomic_write_json
    from delo.tools import drill as drills
    from delo.tools.node_drill import nodes

    if args.drill == "chaos":
        summary = drills.chaos(args.trials, args.kills, args.seed, args.interval, args.search, args.workdir)
    elif args.drill == "nodes":
        summary = nodes(args.trials, args.workdir)
    else:
        summary = drills.asha(args.samples, args.tasks, args.grace, args.seed, args.workdir)
    print(drills.summary_text(summary))
    if args.out:
        atomic_write_json(args.out, summary, indent=2, sort_keys=False)
    return 0 if summary["ok"] else 1


def tuned(argv: list[str] | None = None) -> int:
    """Write the final methods spec from the equal-budget searches: each row of METHODS_SPEC at its method's best
    val configuration (search_<method>, or search for DeLo, under --searches), over --seeds that no search used."""
    p = argparse.ArgumentParser(description=tuned.__doc__)
    p.add_argument(
        "methods_spec", nargs="?", default="sweeps/methods.yaml", help="the grid spec whose rows to tune"
    )
    p.add_argument("--searches", default="sweep_results", help="the folder holding the search folders")
    p.add_argument(
        "--seeds", default="1,2,3,4,5", help="comma-separated training seeds (the searches use seed 0)"
    )
    p.add_argument("--name", default="methods_tuned", help="the new spec's name (its sweep folder)")
    p.add_argument("--out", default="sweeps/methods_tuned.yaml", help="where the spec goes")
    args = p.parse_args(argv)

    from delo.atomic import atomic_write_text
    from delo.config import ConfigError
    from delo.sweep.tuned import read_methods_spec, tuned_rows, tuned_spec_text

    spec = Path(args.methods_spec)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(
            f"error: --seeds {args.seeds!r}: comma-separated integers are needed, e.g. 1,2,3,4,5",
            file=sys.stderr,
        )
        return 2
    if not seeds or 0 in seeds or len(set(seeds)) != len(seeds):
        print(
            f"error: --seeds {args.seeds!r}: distinct seeds other than 0 (the searches' seed) are needed",
            file=sys.stderr,
        )
        return 2
    try:
        raw = read_methods_spec(spec)  # a missing or malformed file is a ConfigError naming it
        rows = tuned_rows(raw, Path(args.searches))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(Path(args.out), tuned_spec_text(raw, spec.name, rows, seeds, args.name))
    for row in rows:
        print(f"{row.variant:16s} <- {row.search}/{row.trial} (val final AP {row.val_final_ap:.2f})")
    print(args.out)
    return 0
