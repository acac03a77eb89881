"""Meta-train a policy initialization that adapts to new tasks in a few episodes.

python train.py                                   # door, MAML, defaults
python train.py --family point --algo reptile --iterations 100
python train.py --config my.yaml --out runs/mine  # values from a file, flags override them
python train.py --resume runs/mine                # continue a stopped run where it left off
python train.py --resume runs/mine --iterations 500   # train a run longer: 500 iterations in all
python train.py --help                            # every option, with its meaning and default; the progress bar

Ctrl-C (or SIGTERM) stops a run at its last complete iteration, checkpointed, and says how to resume it; the exit
status is 130 (143 for SIGTERM).
"""

from __future__ import annotations

import sys

from meta.config import Resume, parse_args
from meta.runs import progress
from meta.trainer import Stopped, train


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if isinstance(args, Resume) and args.iterations is None:
            done, total = progress(args.run)
            if done >= total:
                print(
                    f"{args.run} is complete ({done}/{total} iterations); "
                    f"train it longer with --resume {args.run} --iterations N"
                )
                return 0
        run = train(None, args.run, args.iterations) if isinstance(args, Resume) else train(args)
    except ValueError as e:  # bad input found once the run is opened (a damaged checkpoint, a taken --out, ...)
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(
            f"stopped at iteration {e.iteration} of {e.iterations}; resume with: python train.py --resume {e.run}",
            file=sys.stderr,
        )
        return 128 + e.signum
    except KeyboardInterrupt:  # before the trainer took Ctrl-C over, while it only read: nothing is half-written
        print("train.py: stopped while starting; nothing was written", file=sys.stderr)
        return 130
    print(f"run folder: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
