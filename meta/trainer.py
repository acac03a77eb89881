"""The meta-training loop: sample a meta-batch from the train split → support rollouts → adapt → query rollouts →
outer step → log → checkpoint.

A run folder holds ``config.yaml`` (fully resolved), ``metrics.csv`` and TensorBoard events under ``tb/`` (keys
``rollout/…``, ``inner/…``, ``outer/…``, ``perf/…``), ``tasks.jsonl`` (the task batch of every iteration) and
``checkpoints/`` (``latest.pt``, ``best.pt`` by post-adaptation return, and ``iter_NNNNN.pt`` every
``checkpoint_every`` iterations). A checkpoint holds everything the next iteration depends on (θ, optimizer,
normalizer, random generators), so ``--resume`` continues a killed run exactly as if it had not stopped.
"""

from __future__ import annotations

import csv
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, init_params, stack
from agents.rollout import Rollout, collect
from envs.family import TaskBatch
from envs.registry import make_family
from envs.vec_env import TaskVecEnv
from meta import checkpoint
from meta.config import TrainConfig, from_dict, load_yaml, save_yaml, to_dict
from meta.outer_loop import OuterLoop, make_outer_loop


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.family}-{cfg.algo}-seed{cfg.seed}-{stamp}"


def open_run(cfg: TrainConfig | None, resume: str | None) -> tuple[TrainConfig, Path, dict | None]:
    """The run's config, folder and (when resuming) its latest checkpoint. Everything is checked before anything
    is written, so bad input leaves no file changed."""
    if resume is not None:
        run = Path(resume)
        cfg, state = read_checkpoint(run, "latest")
        return cfg, run, state
    run = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if run.exists() and any(run.iterdir()):
        raise ValueError(f"--out {run} already holds files: continue it with --resume {run}, or choose another --out")
    cfg = from_dict({**to_dict(cfg), "out": str(run)}, where="config")
    return cfg, run, None


class MetricsLog:
    """``metrics.csv`` plus TensorBoard events, both cut back to the resumed iteration."""

    def __init__(self, run: Path, start: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = run / "metrics.csv"
        self.rows: list[dict] = []
        if self.path.exists():
            with self.path.open() as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
        self.writer = SummaryWriter(str(run / "tb"), purge_step=start + 1)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        for k, v in row.items():
            if "/" in k:
                self.writer.add_scalar(k, v, row["iteration"])
        with self.path.open("w", newline="") as f:  # rewritten whole: a run killed mid-write keeps a valid file
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(self.rows)

    def close(self) -> None:
        self.writer.close()


def build(cfg: TrainConfig, state: dict | None = None) -> tuple[OuterLoop, ObsNormalizer]:
    """The outer loop (with θ) and the observation normalizer of a run: fresh, or restored from a checkpoint."""
    family = make_family(cfg.family)
    module = ActorCritic(family.obs_dim, family.action_dim, cfg.hidden)
    learner = make_outer_loop(cfg, module, init_params(module, cfg.seed))
    normalizer = ObsNormalizer(family.obs_dim, cfg.normalize_obs)
    if state is not None:
        learner.load_state_dict(state["learner"])
        normalizer.load_state_dict(state["normalizer"])
    return learner, normalizer


def load_run(run: str | Path, which: str = "latest") -> tuple[TrainConfig, OuterLoop, ObsNormalizer]:
    """A trained run's config, outer loop and normalizer from ``checkpoints/<which>.pt`` (``latest`` or ``best``)."""
    cfg, state = read_checkpoint(Path(run), which)
    return (cfg, *build(cfg, state))


def read_checkpoint(run: Path, which: str) -> tuple[TrainConfig, dict]:
    """A run's config and its checkpoint ``which``, checked to belong together (one-line ``ValueError`` if not)."""
    if not (run / "config.yaml").is_file():
        raise ValueError(f"{run}: not a run folder (no config.yaml)")
    cfg = from_dict(load_yaml(run / "config.yaml"), where=str(run / "config.yaml"))
    state = checkpoint.load(run / "checkpoints" / f"{which}.pt")
    if state.get("config") != to_dict(cfg):
        raise ValueError(f"{run}: checkpoints/{which}.pt belongs to another run (its config differs)")
    return cfg, state


def adapt_and_measure(
    env: TaskVecEnv,
    learner: OuterLoop,
    normalizer: ObsNormalizer,
    tasks: TaskBatch,
    noise: torch.Generator,
    seeds: tuple[int, int],
) -> tuple[Rollout, Params, dict[str, float], Rollout]:
    """One meta-batch's adaptation: support rollouts of θ, φ_i = adapt(θ, support_i), query rollouts of φ (fresh
    episodes, never the support ones). Returns ``(support, φ, inner-loop metrics, query)``; ``φ`` keeps its graph
    to θ when the learner differentiates through adaptation."""
    env.set_tasks(tasks)
    steps = env.family.episode_length
    theta = {k: v.detach() for k, v in stack(learner.theta, len(tasks)).items()}
    support = collect(env, learner.module, theta, normalizer, steps, noise, seeds[0])
    phi, inner = learner.adapt(support)
    query = collect(env, learner.module, {k: v.detach() for k, v in phi.items()}, normalizer, steps, noise, seeds[1])
    return support, phi, inner, query


def train(cfg: TrainConfig | None, resume: str | None = None) -> Path:
    """Meta-train (or continue the run in ``resume``); returns the run folder."""
    cfg, run, state = open_run(cfg, resume)
    torch.set_num_threads(1)  # torch shares the cores with MuJoCo's thread pool (shared/FACTS.md)
    family = make_family(cfg.family)
    task_rng = np.random.default_rng(cfg.seed)
    noise = torch.Generator().manual_seed(cfg.seed)
    env = TaskVecEnv(family, family.sample(0, cfg.meta_batch), cfg.envs_per_task, cfg.backend, cfg.device, cfg.seed)
    learner, normalizer = build(cfg, state)
    start, best = 0, -float("inf")
    if state is not None:
        task_rng.bit_generator.state = state["rng"]["numpy"]
        noise.set_state(state["rng"]["torch"])
        start, best = state["iteration"], state["best"]
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run / "config.yaml")
    log = MetricsLog(run, start)
    steps_per_rollout = family.episode_length * cfg.meta_batch * cfg.envs_per_task
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=f"{cfg.algo} {cfg.family}")
    for it in bar:
        began = time.perf_counter()
        tasks = family.sample(task_rng, cfg.meta_batch, "train")
        seeds = tuple(int(s) for s in task_rng.integers(2**31, size=2))
        support, phi, inner, query = adapt_and_measure(env, learner, normalizer, tasks, noise, seeds)
        outer = learner.update(phi, support, query)
        normalizer.update(torch.cat([support.raw_obs, query.raw_obs]))
        seconds = time.perf_counter() - began
        row = {
            "iteration": it + 1,
            "env_steps": (it + 1) * 2 * steps_per_rollout,
            "rollout/pre_return": support.stats["return"].mean().item(),
            "rollout/pre_success": support.stats["success"].mean().item(),
            "rollout/post_return": query.stats["return"].mean().item(),
            "rollout/post_success": query.stats["success"].mean().item(),
            **inner,
            **outer,
            "perf/env_steps_per_s": 2 * steps_per_rollout / seconds,
            "perf/iteration_s": seconds,
        }
        log.add(row)
        with (run / "tasks.jsonl").open("a") as f:
            f.write(json.dumps({"iteration": it + 1, **tasks.to_dict()}) + "\n")
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
        checkpoint.save(run / "checkpoints" / "latest.pt", ckpt)
        if improved:
            checkpoint.save(run / "checkpoints" / "best.pt", ckpt)
        if (it + 1) % cfg.checkpoint_every == 0:
            checkpoint.save(run / "checkpoints" / f"iter_{it + 1:05d}.pt", ckpt)
        bar.set_postfix(
            pre=f"{row['rollout/pre_return']:.1f}/{row['rollout/pre_success']:.0%}",
            post=f"{row['rollout/post_return']:.1f}/{row['rollout/post_success']:.0%}",
            sps=f"{row['perf/env_steps_per_s']:,.0f}",
        )
    log.close()
    return run
