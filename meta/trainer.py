"""The meta-training loop: sample a meta-batch from the train split → support rollouts → adapt → query rollouts →
outer step → log → checkpoint.

What a run folder holds is :mod:`meta.runs`'s to say. A checkpoint holds everything the next iteration depends on
(θ, optimizer, normalizer, random generators), so ``--resume`` continues a stopped run exactly as if it had not
stopped. SIGINT (Ctrl-C) and SIGTERM stop a run between two whole iterations (:class:`Stopped`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from envs.sim import share_cores_with_physics
from meta.algorithms import build
from meta.config import TrainConfig, family_of, to_dict
from meta.distributed import RayWorkers
from meta.outer_loop import combine
from meta.runs import MetricsLog, RunFolder, begin, duration, mujoco_log, open_run, save_checkpoints, training
from meta.worker import InProcess, ShardResult, adopt_noise_state, iteration_state


class Stopped(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM. The run folder ends at ``iteration``, the last complete iteration, its
    checkpoint written: ``--resume`` continues it. A ``KeyboardInterrupt``, so that a caller that does not catch it
    (evaluate.py training a baseline) stops as on any Ctrl-C."""

    def __init__(self, signum: int, run: Path, iteration: int, iterations: int) -> None:
        super().__init__(f"stopped at iteration {iteration} of {iterations}")
        self.signum, self.run, self.iteration, self.iterations = signum, run, iteration, iterations


class _Signal(BaseException):
    """Raised by the handler into the loop, with the signal's number. Not an ``Exception``, so that no ``except
    Exception`` (a Ray worker's restart) takes it for a failure to retry."""


class _StopOnSignal:
    """SIGINT and SIGTERM while training: outside :meth:`deferred` blocks they abandon the iteration at once (its work
    is redone on resume), inside they wait for the block's end, so that an iteration's records and checkpoints are
    written whole. Installed only in the main thread, the one Python delivers signals to."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._before: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._before = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._before.items():  # None: a handler not set from Python, which cannot be put back
            signal.signal(s, signal.SIG_DFL if handler is None else handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        if not self._deferring:
            raise _Signal(self.signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a signal does not cut: one arriving during it stops training once the block is done."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.signum is not None:
            raise _Signal(self.signum)


def make_workers(cfg: TrainConfig) -> InProcess | RayWorkers:
    """Where the meta-batches run: :class:`meta.worker.InProcess`, or Ray workers for ``distributed: ray``."""
    return RayWorkers(cfg) if cfg.distributed == "ray" else InProcess(cfg)


def _mean(parts: list[dict[str, torch.Tensor]], key: str) -> float:
    return torch.cat([p[key] for p in parts]).mean().item()


def _name(cfg: TrainConfig) -> str:
    """What trains, as its progress bar names it: ``door/maml``; the oracle baseline (multitask PPO that sees the
    task) as ``door/oracle``, not as the multitask baseline it otherwise is."""
    oracle = cfg.task_in_obs and cfg.algo == "multitask"  # a meta-learner that sees the task keeps its own name
    return f"{cfg.family}/{'oracle' if oracle else cfg.algo}"


def _announce(cfg: TrainConfig, folder: RunFolder, start: int) -> str:
    """The line ``train.py`` prints above its progress bar: what trains, where, and how long it is likely to take,
    said as what it is (the pace of the iterations so far)."""
    what = _name(cfg)
    if start == 0:
        return (
            f"training {what} into {folder.path} ({cfg.iterations} iterations; the time left shows on the bar once "
            "the first iterations ran, at their pace)"
        )
    done = training(folder.path)
    pace = done.seconds / done.iterations if done.iterations else 0.0
    left = f"about {duration(pace * (cfg.iterations - start))} left at this run's pace so far; " if pace else ""
    return f"resuming {what} in {folder.path} at iteration {start} of {cfg.iterations} ({left}updated on the bar)"


def _bar_text(row: dict) -> str:
    """The progress bar's postfix: ``rollout/pre_*`` and ``rollout/post_*`` said as what they are, before and after
    adapting (``train.py --help`` says which episodes those are for each learner)."""

    def episodes(when: str) -> str:
        ret, success = row[f"rollout/{when}_return"], row[f"rollout/{when}_success"]
        return f"return {ret:.{0 if abs(ret) >= 100 else 1}f} success {success:.0%}"  # 717, but -32.6

    speed = f"{row['perf/env_steps_per_s']:,.0f} env steps/s"
    return f"before adapting: {episodes('pre')} | after: {episodes('post')} | {speed}"


def train(cfg: TrainConfig | None, resume: str | None = None, iterations: int | None = None) -> Path:
    """Meta-train (or continue the run in ``resume``, to ``iterations`` in all when given); returns the run folder.

    Raises :class:`Stopped` on SIGINT or SIGTERM, after writing the last complete iteration's records and closing
    the workers.
    """
    cfg, folder, state = open_run(cfg, resume, iterations)
    start = 0 if state is None else state["iteration"]
    if start >= cfg.iterations:
        # Finished: evaluating a run resumes its cached baselines, and that must leave them as they are.
        return folder.path
    share_cores_with_physics()
    family = family_of(cfg)
    task_rng = np.random.default_rng(cfg.seed)
    noise = torch.Generator().manual_seed(cfg.seed)
    learner, normalizer = build(cfg, state)
    best = -float("inf")
    if state is not None:
        task_rng.bit_generator.state = state["rng"]["numpy"]
        noise.set_state(state["rng"]["torch"])
        best = state["best"]
    signals, done = _StopOnSignal(), start
    try:
        with contextlib.ExitStack() as cleanup:  # closed in reverse: bar, log, workers, MuJoCo log, handlers
            cleanup.enter_context(signals)
            with signals.deferred():  # the folder's first files are written whole
                cleanup.enter_context(mujoco_log(folder))
                # The workers before the folder: one that cannot start (Ray missing) is refused with nothing written.
                workers = make_workers(cfg)
                cleanup.callback(workers.close)
                begin(folder, cfg)
                log = MetricsLog(folder, start)
                cleanup.callback(log.close)
            print(_announce(cfg, folder, start), file=sys.stderr, flush=True)
            bar = cleanup.enter_context(
                tqdm(
                    initial=start,
                    total=cfg.iterations,
                    desc=_name(cfg),
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} iterations "
                    "[{elapsed} elapsed, {remaining} left{postfix}]",
                )
            )
            for it in range(start, cfg.iterations):
                began = time.perf_counter()
                tasks = family.sample(task_rng, cfg.meta_batch, "train")
                seeds = tuple(int(s) for s in task_rng.integers(2**31, size=2))
                restarts = workers.restarts
                results: list[ShardResult] = workers.run(iteration_state(learner, normalizer, noise), tasks, seeds)
                outer = learner.apply(combine([r.contribution for r in results]), len(tasks))
                for r in results:
                    normalizer.merge(*r.obs_moments)
                adopt_noise_state(noise, results)
                pre, post = [r.pre for r in results], [r.post for r in results]
                steps = sum(r.env_steps for r in results)
                seconds = time.perf_counter() - began
                row = {
                    "iteration": it + 1,
                    "env_steps": (it + 1) * steps,  # every iteration takes the same steps
                    "rollout/pre_return": _mean(pre, "return"),
                    "rollout/pre_success": _mean(pre, "success"),
                    "rollout/post_return": _mean(post, "return"),
                    "rollout/post_success": _mean(post, "success"),
                    **{k: _mean([r.inner for r in results], k) for k in results[0].inner},
                    **outer,
                    "perf/env_steps_per_s": steps / seconds,
                    "perf/iteration_s": seconds,
                }
                if cfg.distributed != "none":
                    row["perf/worker_restarts"] = workers.restarts - restarts
                improved = row["rollout/post_return"] > best
                best = max(best, row["rollout/post_return"])
                ckpt = {
                    "learner": learner.state_dict(),
                    "normalizer": normalizer.state_dict(),
                    "rng": {"numpy": task_rng.bit_generator.state, "torch": noise.get_state()},
                    "iteration": it + 1,
                    "best": best,
                    "config": to_dict(cfg),
                    "metrics": row,
                }
                with signals.deferred():  # an iteration is recorded whole: a signal now waits for its checkpoints
                    log.add(row, tasks.to_dict())
                    save_checkpoints(folder, ckpt, improved, cfg.checkpoint_every)
                    done = it + 1
                    bar.set_postfix_str(_bar_text(row), refresh=False)
                    bar.update()
    except _Signal as e:
        raise Stopped(e.args[0], folder.path, done, cfg.iterations) from None
    return folder.path
