"""Regenerate the shipped tiny ViLT backbone (delo/vilt/assets/tiny_vilt) deterministically on CPU.

python launch/pretrain_backbone.py [--out DIR] [--steps N] [--seed S] [--threads T] [--probe-only]

After pretraining, the frozen linear probe (delo/tools/probe.py) is run on the default world and written into the
card; --probe-only re-runs just that on an existing folder.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

from delo.tools.pretrain import PretrainConfig, pretrain_tiny, write_card
from delo.tools.probe import probe_folder
from delo.vilt.backbone import TINY_DIR


def main(argv: list[str] | None = None) -> int:
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TINY_DIR, help=f"output folder (default: {TINY_DIR})")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="pretraining seed (not the benchmark's)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: available cores)")
    parser.add_argument(
        "--probe-only", action="store_true", help="only (re)run the linear probe of --out and update its card"
    )
    args = parser.parse_args(argv)
    if args.probe_only:
        card_path = args.out / "card.json"
        if not card_path.is_file():
            print(f"error: {card_path} not found: --probe-only needs a pretrained folder", file=sys.stderr)
            return 2
        card = json.loads(card_path.read_text())
    else:
        command = shlex.join(
            ["python", "launch/pretrain_backbone.py", *(sys.argv[1:] if argv is None else argv)]
        )
        cfg = PretrainConfig(seed=args.seed, steps=args.steps, threads=args.threads)
        card = pretrain_tiny(args.out, cfg, command=command)
        q, q0 = card["quality"]["pretrained"], card["quality"]["init"]
        print(
            f"wrote {args.out} in {card['total_wall_s']} s: ITM {q['itm_acc']:.3f} (init {q0['itm_acc']:.3f}), "
            f"MLM {q['mlm_acc']:.3f} (init {q0['mlm_acc']:.3f}), cos matched/mismatched "
            f"{q['cos_matched']:.3f}/{q['cos_mismatched']:.3f} "
            f"(init {q0['cos_matched']:.3f}/{q0['cos_mismatched']:.3f})"
        )
    card["probe"] = probe_folder(args.out, args.threads)
    write_card(args.out, card)
    print(f"linear probe ({card['probe']['split']}): {card['probe']['scores']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
