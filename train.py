"""Meta-train a policy initialization that adapts to new tasks in a few episodes.

python train.py                                   # door, MAML, defaults
python train.py --family point --algo reptile --iterations 100
python train.py --config my.yaml --out runs/mine  # values from a file, flags override them
python train.py --resume runs/mine                # continue a stopped run where it left off
python train.py --help                            # every option, with its meaning and default
"""

from __future__ import annotations

import sys

from meta.config import parse_args
from meta.trainer import train


def main(argv: list[str] | None = None) -> int:
    cfg, resume = parse_args(argv)
    try:
        run = train(None if resume else cfg, resume)
    except ValueError as e:  # bad input found once the run is opened (a damaged checkpoint, a taken --out, ...)
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    print(f"run folder: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
