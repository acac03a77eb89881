"""``evaluate.py``: few-shot adaptation of a trained run on held-out tasks against baselines; writes
RUN_DIR/eval/<split>/.

Its flags are the fields of :class:`evaluation.protocol.EvalConfig` (the protocol) and of :class:`EvaluateOptions`
(what to compare, where to write, and the video and SB3 hand-off), their docstrings the help text.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from agents.normalizer import ObsNormalizer
from envs.registry import parse_task_batch
from envs.sim import SimSettings, share_cores_with_physics
from evaluation.baselines import BASELINES, TRAINED_IN, baseline, baseline_config
from evaluation.outputs import header, table, write_outputs
from evaluation.protocol import AdaptedMethod, EvalConfig, adaptation_curve, evaluate_methods
from meta.checkpoint import Damaged
from meta.config import TrainConfig, family_of
from meta.flags import Parser, add_flags
from meta.outer_loop import OuterLoop
from meta.runs import RunFolder, load_run, mujoco_log, read_checkpoint, run_config


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``evaluate.py`` compares and writes, beside the protocol."""

    run: str = field(metadata={"positional": True, "metavar": "RUN_DIR"})
    """run folder written by train.py"""
    baselines: tuple[str, ...] = field(default=("scratch",), metadata={"choices": BASELINES, "empty": True})
    """baselines under the same protocol and budget: scratch (a fresh network, the same inner loop), multitask and
    oracle (PPO on the train split for the run's budget, the oracle also seeing the task; trained once, then cached
    in RUN_DIR/eval), sb3 (SB3 PPO from scratch on each task), search (the oracle's policy told the task parameters
    that did best in the support episodes)"""
    baseline_settings: tuple[str, ...] = field(default=(), metadata={"metavar": "KEY=NUMBER"})
    """settings of the trained baselines' PPO (multitask, oracle, search's oracle) over the run's, each one of
    log_std_init, outer_lr, epochs, ent_coef, bound_coef, clip, max_grad_norm; e.g. log_std_init=-1"""
    checkpoint: str = field(default="latest", metadata={"metavar": "NAME"})
    """which checkpoint of the run to evaluate: latest, best (by the return after adapting while training) or
    iter_NNNNN (kept every checkpoint_every iterations); each writes to its own folder"""
    backend: str | None = None
    """simulator to evaluate on: cpu or warp (default: the one the run trained on)"""
    device: str | None = None
    """cpu or cuda (default: the run's device, or cpu with --backend cpu)"""
    out: str | None = field(default=None, metadata={"metavar": "DIR"})
    """output folder (default: RUN_DIR/eval/<split> for latest, RUN_DIR/eval/<split>-<checkpoint> for another)"""
    video: bool = False
    """also render up to 4 held-out tasks before and after K rounds, side by side, to adaptation.mp4"""
    video_only: bool = False
    """render the video and skip the metrics"""
    export_sb3: str | None = field(default=None, metadata={"metavar": "FILE.zip"})
    """adapt to the task of --task for K rounds and write the adapted policy as an SB3 PPO model"""
    task: str | None = field(default=None, metadata={"metavar": "TASK.json"})
    """the task to adapt to for --export-sb3: a one-task batch (python -m envs sample FAMILY --n 1)"""


def parser() -> Parser:
    p = Parser(
        prog="evaluate.py",
        description="Few-shot adaptation of a trained run on held-out tasks, against baselines; writes "
        "RUN_DIR/eval/<split>/ (eval.json, eval.csv, adaptation.png).",
        allow_abbrev=False,
    )
    add_flags(p, EvaluateOptions)
    add_flags(p.add_argument_group("protocol"), EvalConfig)
    return p


def _given(cls: type, args: dict) -> dict:
    """The flags of dataclass ``cls``'s fields that were given, as keyword arguments (lists as tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if k in names}


def parse_settings(items: tuple[str, ...]) -> dict[str, float | int]:
    """``KEY=NUMBER`` strings as a mapping (every :data:`evaluation.baselines.BASELINE_SETTINGS` is a number); a whole
    number for an integer setting (``epochs=1``) is an int, as TrainConfig's check of it expects."""
    integers = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "int"}
    settings = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--baseline-settings {item!r} is not allowed: expected KEY=NUMBER") from None
        settings[key] = int(number) if key in integers and number.is_integer() else number
    return settings


def load(opts: EvaluateOptions) -> tuple[TrainConfig, OuterLoop, ObsNormalizer]:
    """The run's checkpoint ``opts.checkpoint``. A name the run does not keep, or a damaged file, is refused in one
    line naming the checkpoints it does keep: an earlier one may be whole."""
    run_config(opts.run)  # a missing folder, or one that is not a run, is said as such first
    kept = RunFolder(Path(opts.run)).kept()
    if opts.checkpoint not in kept:
        raise ValueError(
            f"--checkpoint {opts.checkpoint} is not allowed: expected one of {', '.join(kept)}"
            if kept
            else f"--checkpoint {opts.checkpoint} is not allowed: {opts.run} keeps no checkpoint yet"
        )
    try:
        return load_run(opts.run, opts.checkpoint)
    except Damaged as e:
        others = [k for k in kept if k != opts.checkpoint]
        if not others:
            raise
        either = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} or {others[-1]}"
        raise ValueError(f"{e}; try --checkpoint {either}") from None


def simulator(opts: EvaluateOptions, cfg: TrainConfig) -> SimSettings:
    """The engine to evaluate on: the run's own unless the flags choose another; one-line ``ValueError`` when this
    machine cannot run it."""
    backend = opts.backend or cfg.backend
    device = opts.device or (cfg.device if backend == cfg.backend else "cpu")
    sim = SimSettings(backend, device)
    if sim.backend == "warp":
        from envs.sim.warp import warp_device  # MuJoCo Warp is an extra: imported only when asked for

        try:
            warp_device(sim.device)
        except ValueError as e:
            raise ValueError(
                f"{opts.run} trained on backend={cfg.backend!r}, device={cfg.device!r}, which this machine cannot run "
                f"({e}): evaluate it on the CPU engine with --backend cpu"
            ) from None
    return sim


def export(opts: EvaluateOptions, cfg: TrainConfig, method: AdaptedMethod, ec: EvalConfig, sim: SimSettings) -> None:
    """``--export-sb3``: adapt the meta-learned policy to one task, then hand it to SB3."""
    from evaluation.sb3_export import export_sb3

    if opts.task is None:
        raise ValueError("--export-sb3 needs --task TASK.json (the task to adapt to)")
    a = method.adaptation
    a.mlp_policy(a.start(method.theta, 1), 0, method.normalizer)  # refuses a learner without one before adapting
    try:
        batch = parse_task_batch(Path(opts.task).read_text())
    except OSError as e:
        raise ValueError(f"--task {opts.task} cannot be read: {e.strerror}") from None
    if batch.family != cfg.family or len(batch) != 1:
        raise ValueError(f"--task {opts.task} must hold exactly one {cfg.family} task")
    curve = adaptation_curve(method, family_of(cfg), batch, ec, ec.seeds[0], sim)
    params, normalizer = a.mlp_policy(curve["adapted"], 0, method.normalizer)
    export_sb3(params, cfg.hidden, normalizer, family_of(cfg), batch.tasks[0], opts.export_sb3)
    print(
        f"adapted to {opts.task} in {ec.steps} rounds (return {curve['return'][0, 0]:.1f} → "
        f"{curve['return'][-1, 0]:.1f}); wrote {opts.export_sb3}: load it with stable_baselines3.PPO.load"
    )


def video(cfg: TrainConfig, method: AdaptedMethod, ec: EvalConfig, sim: SimSettings, out: Path) -> None:
    """``--video``: the meta-learned policy before adaptation and after K rounds on up to 4 held-out tasks."""
    from evaluation.video import render_comparison

    family = family_of(cfg)
    tasks = family.sample(ec.seeds[0], min(4, ec.n_tasks), ec.split)
    a, normalizer = method.adaptation, method.normalizer
    before = a.start(method.theta, len(tasks))
    after = adaptation_curve(method, family, tasks, ec, ec.seeds[0], sim)["adapted"]
    policies = [
        ("before adaptation", lambda i: a.policy(before, i, normalizer)),
        (f"after K={ec.steps}", lambda i: a.policy(after, i, normalizer)),
    ]
    frames = render_comparison(family, tasks, policies, out / "adaptation.mp4", seed=ec.seeds[0])
    print(f"wrote {out / 'adaptation.mp4'} ({frames} frames, {len(tasks)} tasks × before/after)")


def title(cfg: TrainConfig, ec: EvalConfig, checkpoint: str) -> str:
    """The plots' title: what was evaluated, on how many tasks and seeds (``door (maml) on test: 20 tasks × 1
    seed``), and the checkpoint when not the latest."""
    seeds = f"{len(ec.seeds)} seed{'s' if len(ec.seeds) > 1 else ''}"
    which = "" if checkpoint == "latest" else f", checkpoint {checkpoint}"
    return f"{cfg.family} ({cfg.algo}{which}) on {ec.split}: {ec.n_tasks} tasks × {seeds}"


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = vars(p.parse_args(argv))
    try:
        opts = EvaluateOptions(**_given(EvaluateOptions, args))
        ec = EvalConfig(**_given(EvalConfig, args))
        settings = parse_settings(opts.baseline_settings)
        cfg, learner, normalizer = load(opts)
        baseline_config(cfg, "multitask", 1, settings)  # a bad setting is refused before anything is written
        sim = simulator(opts, cfg)
        share_cores_with_physics()
        method = AdaptedMethod.of(cfg.algo, learner, normalizer)
        if opts.export_sb3 is not None:
            with mujoco_log(RunFolder(Path(opts.run))):
                export(opts, cfg, method, ec, sim)
            return 0
        out = Path(opts.out) if opts.out else RunFolder(Path(opts.run)).evaluation(ec.split, opts.checkpoint)
        try:  # the last check, so bad input above leaves nothing behind
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--out {out} is not writable: {e.strerror}") from None
        if not os.access(out, os.W_OK):
            raise ValueError(f"--out {out} is not writable")
        if opts.video or opts.video_only:
            from evaluation.video import choose_gl_backend

            try:
                choose_gl_backend()
            except RuntimeError as e:  # no offscreen GL: a missing system package, said in one line
                p.exit(1, f"{p.prog}: error: {e}\n")
    except ValueError as e:
        p.error(str(e))
    with mujoco_log(RunFolder(Path(opts.run))):
        if opts.video or opts.video_only:
            video(cfg, method, ec, sim, out)
            if opts.video_only:
                return 0
        family = family_of(cfg)
        iterations = read_checkpoint(opts.run, opts.checkpoint)[1]["iteration"]
        methods = [method]
        for name in opts.baselines:
            if name in TRAINED_IN:
                trained = f"{TRAINED_IN[name]} PPO on the train split for the run's {iterations} iterations"
                folder = RunFolder(Path(opts.run)).baseline(TRAINED_IN[name], iterations)
                where = f"from {folder}" if folder.exists() else f"trained once now, into {folder}"
                print(f"{name} baseline: {trained} ({where})")
            methods.append(baseline(name, Path(opts.run), cfg, iterations, settings))
        with tqdm(
            total=len(methods) * len(ec.seeds),
            desc=f"evaluate {cfg.family} {ec.split}",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} method × seed "
            "[{elapsed} elapsed, {remaining} left]",
        ) as bar:
            results = evaluate_methods(methods, family, ec, sim, progress=bar)
    results = {**header(Path(opts.run), opts.checkpoint, ec, cfg), **results}
    write_outputs(results, out, title(cfg, ec, opts.checkpoint))
    print(table(results))
    print(f"wrote {out}/eval.json, eval.csv, adaptation.png")
    return 0
