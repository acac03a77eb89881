"""Few-shot adaptation of a trained run on held-out tasks, against baselines; writes RUN_DIR/eval/<split>/.

python evaluate.py runs/door-maml-seed0-...                 # test split, scratch baseline
python evaluate.py RUN_DIR --split ood --seeds 0 1 2 --steps 3
python evaluate.py --help
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from meta.config import family_of
from meta.evaluation import (
    BASELINE_SETTINGS,
    BASELINES,
    TRAINED_IN,
    EvalConfig,
    adaptation_curve,
    baseline,
    baseline_config,
    evaluate_methods,
    header,
    meta_method,
    table,
    write_outputs,
)
from meta.trainer import load_run, read_checkpoint


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0], allow_abbrev=False)
    d = EvalConfig()
    p.add_argument("run", help="run folder written by train.py")
    p.add_argument("--split", choices=("test", "ood"), default=d.split, help="held-out split to sample tasks from")
    p.add_argument("--tasks", type=int, default=d.n_tasks, help=f"tasks per seed (default {d.n_tasks})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"K, inner steps of adaptation (default {d.steps})")
    p.add_argument(
        "--support-episodes",
        type=int,
        default=d.support_episodes,
        help=f"episodes per task for each inner step (default {d.support_episodes})",
    )
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=d.eval_episodes,
        help=f"fresh episodes per task measuring each k (default {d.eval_episodes})",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds), help="seeds (each samples its own tasks)")
    p.add_argument(
        "--baselines",
        nargs="*",
        choices=BASELINES,
        default=["scratch"],
        help="baselines under the same protocol and budget (default: scratch; multitask and oracle, PPO that sees "
        "the task, train once, then are cached in RUN_DIR/eval; search tells the oracle's policy the task "
        "parameters that did best in the support episodes)",
    )
    p.add_argument(
        "--baseline-settings",
        nargs="+",
        default=[],
        metavar="KEY=NUMBER",
        help="settings of the trained baselines' PPO (multitask, oracle, search's oracle) over the run's, one of "
        f"{', '.join(BASELINE_SETTINGS)}; e.g. log_std_init=-1",
    )
    p.add_argument("--checkpoint", choices=("latest", "best"), default="latest", help="which checkpoint to load")
    p.add_argument("--out", type=Path, help="output folder (default RUN_DIR/eval/<split>)")
    p.add_argument(
        "--video",
        action="store_true",
        help="also render up to 4 held-out tasks before and after K steps, side by side, to adaptation.mp4",
    )
    p.add_argument("--video-only", action="store_true", help="render the video and skip the metrics")
    p.add_argument(
        "--export-sb3",
        type=Path,
        metavar="FILE.zip",
        help="adapt to the task of --task for K steps and write the adapted policy as an SB3 PPO model",
    )
    p.add_argument(
        "--task",
        type=Path,
        metavar="TASK.json",
        help="the task to adapt to for --export-sb3: a one-task batch (python -m envs sample FAMILY --n 1)",
    )
    return p


def parse_settings(items: list[str]) -> dict[str, float]:
    """``KEY=NUMBER`` strings as a mapping (every :data:`meta.evaluation.BASELINE_SETTINGS` is a number)."""
    settings = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            settings[key] = float(value)
        except ValueError:
            raise ValueError(f"--baseline-settings {item!r} is not allowed: expected KEY=NUMBER") from None
    return settings


def export(args, cfg, learner, normalizer, ec: EvalConfig) -> None:
    """``--export-sb3``: adapt the meta-learned policy to one task, then hand it to SB3."""
    from envs.family import TaskBatch
    from meta.sb3_export import export_sb3

    if args.task is None:
        raise ValueError("--export-sb3 needs --task TASK.json (the task to adapt to)")
    try:
        batch = TaskBatch.from_json(args.task.read_text())
    except OSError as e:
        raise ValueError(f"--task {args.task} cannot be read: {e.strerror}") from None
    if batch.family != cfg.family or len(batch) != 1:
        raise ValueError(f"--task {args.task} must hold exactly one {cfg.family} task")
    family = family_of(cfg)
    curve = adaptation_curve(meta_method(cfg, learner, normalizer), family, batch, ec, ec.seeds[0])
    adapted = {k: v[0] for k, v in curve["adapted"].items()}
    export_sb3(adapted, cfg.hidden, normalizer, family, batch.tasks[0], args.export_sb3)
    print(
        f"adapted to {args.task} with {ec.steps} inner steps (return {curve['return'][0, 0]:.1f} → "
        f"{curve['return'][-1, 0]:.1f}); wrote {args.export_sb3}: load it with stable_baselines3.PPO.load"
    )


def video(cfg, learner, normalizer, ec: EvalConfig, out: Path) -> None:
    """``--video``: the meta-learned policy before adaptation and after K steps on up to 4 held-out tasks."""
    from meta.sb3_export import mean_action
    from meta.video import render_comparison

    family = family_of(cfg)
    tasks = family.sample(ec.seeds[0], min(4, ec.n_tasks), ec.split)
    method = meta_method(cfg, learner, normalizer)
    adapted = adaptation_curve(method, family, tasks, ec, ec.seeds[0])["adapted"]
    policies = [
        ("before adaptation", lambda i, obs: mean_action(method.theta, normalizer, obs)),
        (f"after K={ec.steps}", lambda i, obs: mean_action({k: v[i] for k, v in adapted.items()}, normalizer, obs)),
    ]
    frames = render_comparison(family, tasks, policies, out / "adaptation.mp4", seed=ec.seeds[0])
    print(f"wrote {out / 'adaptation.mp4'} ({frames} frames, {len(tasks)} tasks × before/after)")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        ec = EvalConfig(
            args.split, args.tasks, args.steps, args.support_episodes, args.eval_episodes, tuple(args.seeds)
        )
        settings = parse_settings(args.baseline_settings)
        cfg, learner, normalizer = load_run(args.run, args.checkpoint)
        baseline_config(cfg, "multitask", 1, settings)  # a bad setting is refused before anything is written
        torch.set_num_threads(1)  # torch shares the cores with MuJoCo's thread pool
        if args.export_sb3 is not None:
            export(args, cfg, learner, normalizer, ec)
            return 0
        out = args.out or Path(args.run) / "eval" / ec.split
        try:  # the last check, so bad input above leaves nothing behind
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--out {out} is not writable: {e.strerror}") from None
        if not os.access(out, os.W_OK):
            raise ValueError(f"--out {out} is not writable")
        if args.video or args.video_only:
            from meta.video import choose_gl_backend

            try:
                choose_gl_backend()
            except RuntimeError as e:  # no offscreen GL: a missing system package, said in one line
                p.exit(1, f"{p.prog}: error: {e}\n")
    except ValueError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    if args.video or args.video_only:
        video(cfg, learner, normalizer, ec, out)
        if args.video_only:
            return 0
    family = family_of(cfg)
    iterations = read_checkpoint(Path(args.run), args.checkpoint)[1]["iteration"]
    methods = [meta_method(cfg, learner, normalizer)]
    for name in args.baselines:
        if name in TRAINED_IN:
            trained = TRAINED_IN[name]
            print(f"{name} baseline: {trained} PPO on the train split for the run's {iterations} iterations (cached)")
        methods.append(baseline(name, Path(args.run), cfg, iterations, settings))
    with tqdm(total=len(methods) * len(ec.seeds), desc=f"evaluate {cfg.family} {ec.split}", unit="seed") as bar:
        results = evaluate_methods(methods, family, ec, progress=bar)
    results = {**header(Path(args.run), args.checkpoint, ec, cfg), **results}
    write_outputs(results, out, f"{cfg.family} ({cfg.algo}) on {ec.n_tasks}×{len(ec.seeds)} {ec.split} tasks")
    print(table(results))
    print(f"wrote {out}/eval.json, eval.csv, adaptation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
