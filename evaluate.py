"""Few-shot adaptation of a trained run on held-out tasks, against baselines; writes RUN_DIR/eval/<split>/.

python evaluate.py runs/door-maml-seed0-...                 # test split, scratch baseline
python evaluate.py RUN_DIR --split val --seeds 0 1 2       # tune on val draws; report test once
python evaluate.py RUN_DIR --split ood --baselines scratch multitask search
python evaluate.py --help                                   # every option, with its meaning and default
"""

from __future__ import annotations

import sys

from evaluation.command import main

if __name__ == "__main__":
    sys.exit(main())
