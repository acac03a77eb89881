"""``python -m benchmarks.learning``: run a plan's cells that are left, or say how far they got, then report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

import benchmarks.learning
from benchmarks.learning.cells import check_run, held, progress, run_cell, status
from benchmarks.learning.plan import load_plan
from benchmarks.learning.report import display_path, make_records, write_report
from envs.registry import FAMILIES
from envs.sim import share_cores_with_physics

RESULTS = Path("results")  # where runs go by default: RESULTS/<plan>/<cell>/
README = Path("README.md")  # whose headline table a report into docs/ rewrites (between its markers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.learning",
        description=benchmarks.learning.__doc__.splitlines()[0],
        allow_abbrev=False,
    )
    p.add_argument("--plan", required=True, type=Path, metavar="PLAN.yaml", help="the plan: benchmarks/plans/*.yaml")
    p.add_argument("--results", type=Path, default=RESULTS, help="where runs go: RESULTS/<plan>/ (default results)")
    p.add_argument("--out", type=Path, help="where results.json, results.md and img/ go (default: the plan's out)")
    p.add_argument(
        "--readme",
        type=Path,
        metavar="README.md",
        help="rewrite the headline table between this file's <!-- results:begin --> and <!-- results:end --> markers "
        "(default: README.md when the report goes to the plan's out and that is docs; none without the markers)",
    )
    p.add_argument("--only", nargs="+", choices=list(FAMILIES), metavar="FAMILY", help="run only these families' cells")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="print every cell as done, partial or todo; run nothing")
    mode.add_argument("--report", action="store_true", help="write the report from the finished cells; run nothing")
    args = p.parse_args(argv)
    try:
        plan = load_plan(args.plan)
        runs = args.results / plan.name
        for cell in plan.cells:
            check_run(cell, runs / cell.name)
    except ValueError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    if args.status:
        print("\n".join(status(plan, runs)))
        return 0
    if not args.report:
        share_cores_with_physics()
        todo = [
            c
            for c in plan.cells
            if (args.only is None or c.family in args.only) and progress(c, runs / c.name).state(c) != "done"
        ]
        for cell in tqdm(todo, desc=f"plan {plan.name}", unit="cell"):
            with held(runs / cell.name) as mine:
                if mine:
                    run_cell(cell, runs / cell.name)
                else:
                    tqdm.write(f"{cell.name}: another process is running it; skipped")
    out = args.out or plan.out or runs
    records = make_records(plan, runs)
    command = " ".join(
        [p.prog, "--plan", display_path(args.plan)]
        + (["--results", display_path(args.results)] if args.results != RESULTS else [])
        + (["--out", display_path(args.out)] if args.out else [])
    )
    readme = args.readme or (README if args.out is None and plan.out == Path("docs") else None)
    if write_report(plan, runs, out, records, command, readme):
        print(f"wrote {len(records)} records to {out / 'results.json'}, {out / 'results.md'} and the table of {readme}")
    else:
        print(f"wrote {len(records)} records to {out / 'results.json'}, and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
