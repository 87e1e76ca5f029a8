"""Regenerate the shipped tiny ViLT backbone (delo/assets/tiny_vilt) deterministically on CPU.

python launch/pretrain_backbone.py [--out DIR] [--steps N] [--seed S]
"""

import argparse
import shlex
import sys
from pathlib import Path

from delo.backbone import TINY_DIR
from delo.pretrain import PretrainConfig, pretrain_tiny


def main(argv: list[str] | None = None) -> int:
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TINY_DIR, help=f"output folder (default: {TINY_DIR})")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimiser steps")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="pretraining seed (not the benchmark's)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: available cores)")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "launch/pretrain_backbone.py", *(sys.argv[1:] if argv is None else argv)])
    cfg = PretrainConfig(seed=args.seed, steps=args.steps, threads=args.threads)
    card = pretrain_tiny(args.out, cfg, command=command)
    q, q0 = card["quality"]["pretrained"], card["quality"]["init"]
    print(
        f"wrote {args.out} in {card['total_wall_s']} s: ITM {q['itm_acc']:.3f} (init {q0['itm_acc']:.3f}), "
        f"MLM {q['mlm_acc']:.3f} (init {q0['mlm_acc']:.3f}), cos matched/mismatched "
        f"{q['cos_matched']:.3f}/{q['cos_mismatched']:.3f} (init {q0['cos_matched']:.3f}/{q0['cos_mismatched']:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
