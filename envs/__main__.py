"""``python -m envs``: list the families, show one in detail, sample task batches, render sampled tasks.

python -m envs list
python -m envs show door
python -m envs sample door --split ood --n 4 --seed 0 > tasks.json
python -m envs sample door --split val --n 20
python -m envs render door --split ood --n 4 --out doors.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from envs.family import SPLITS, Family, format_domain
from envs.registry import FAMILIES, make_family, parse_task_batch

# Four splits, two kinds of region: printed once with the regions so that val and test are not read as regions
# of their own.
SPLITS_NOTE = (
    "splits: train, val and test draw from the train regions (each on its own random stream), ood from the ood regions"
)


def _fmt_regions(f: Family, regions) -> list[str]:
    """One line per region, naming only what differs from the first train region."""
    base = f.train[0]
    lines = []
    for r in regions:
        diff = {k: v for k, v in r.items() if tuple(v) != tuple(base[k])} if r is not base else dict(r)
        lines.append(", ".join(f"{k} ∈ {format_domain(v)}" for k, v in diff.items()))
    return lines


def cmd_list(_: argparse.Namespace) -> None:
    print(SPLITS_NOTE)
    for name in FAMILIES:
        f = make_family(name)
        print(f"{name:8s} {f.description}")
        print(f"{'':8s} obs {f.obs_dim}, action {f.action_dim}, {f.episode_length} steps per episode")
        print(f"{'':8s} params: {', '.join(p.name for p in f.params)}")
        print(f"{'':8s} train: " + " | ".join(_fmt_regions(f, f.train)))
        print(f"{'':8s} ood:   " + " | ".join(_fmt_regions(f, f.ood)))


def cmd_show(args: argparse.Namespace) -> None:
    f = make_family(args.family)
    if args.json:
        print(json.dumps(f.describe(), indent=1))
        return
    d = f.describe()
    print(f"{f.name}: {f.description}")
    print(
        f"observation {f.obs_dim}, action {f.action_dim} in [-1, 1], {f.episode_length} steps of {d['control_dt']:g} s"
    )
    print(f"reward: {f.reward_doc}")
    print(f"success: {f.success_doc}")
    if f.scripted_success is not None:
        print(f"scripted controller: solves ≥ {f.scripted_success:.0%} of train tasks")
    print(f"varies per task (MjModel fields): {', '.join(sorted(f.varying_fields)) or 'none'}")
    print(SPLITS_NOTE)
    print(
        "parameters: each one's domain (what any task of the family may take), then the regions the splits draw "
        "from, one per '|': a split's tasks come from the union of its regions, each a box over every parameter, "
        "so region 1 of a parameter goes with region 1 of the others"
    )
    for p in f.params:
        print(f"  {p.name}: {p.doc}; {p.allowed()}")
        print(f"    train: {' | '.join(format_domain(r[p.name]) for r in f.train)}")
        print(f"    ood:   {' | '.join(format_domain(r[p.name]) for r in f.ood)}")


def cmd_sample(args: argparse.Namespace) -> None:
    print(make_family(args.family).sample(args.seed, args.n, args.split).to_json())


def cmd_render(args: argparse.Namespace) -> None:
    from envs.render import render_grid

    f = make_family(args.family)
    if args.tasks is None:
        batch = f.sample(args.seed, args.n, args.split)
    else:
        try:
            batch = parse_task_batch(Path(args.tasks).read_text())
        except OSError as e:
            raise ValueError(f"--tasks {args.tasks} cannot be read: {e.strerror}") from None
        if batch.family != f.name:
            raise ValueError(f"--tasks {args.tasks} holds {batch.family} tasks, not {f.name} tasks")
    render_grid(f, batch, Path(args.out), steps=args.steps, seed=args.seed)
    print(f"wrote {args.out} ({len(batch)} {batch.split} tasks of {f.name})")


def int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m envs", description="robometa task families")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="families with their parameters and split regions").set_defaults(run=cmd_list)
    show = sub.add_parser("show", help="one family in detail")
    show.add_argument("family", choices=list(FAMILIES))
    show.add_argument("--json", action="store_true", help="print the description as JSON")
    show.set_defaults(run=cmd_show)
    for name, run, text in (
        ("sample", cmd_sample, "print a task batch as JSON"),
        ("render", cmd_render, "render sampled tasks into a grid image"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("family", choices=list(FAMILIES))
        c.add_argument(
            "--split",
            choices=SPLITS,
            default="train",
            help="split to sample from (val and test draw from train's region)",
        )
        c.add_argument("--n", type=int_at_least(1), default=4, help="number of tasks")
        c.add_argument("--seed", type=int, default=0, help="sampling seed")
        c.set_defaults(run=run)
        if name == "render":
            c.add_argument("--out", required=True, help="PNG file to write")
            c.add_argument("--tasks", help="render the tasks of this task-batch JSON file instead of sampling")
            c.add_argument(
                "--steps",
                type=int_at_least(0),
                default=0,
                help="control steps to run before the picture (the scripted controller where the family has one)",
            )
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        args.run(args)
    except ValueError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
