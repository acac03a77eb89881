"""The meta-training loop: sample a meta-batch from the train split → support rollouts → adapt → query rollouts →
outer step → log → checkpoint.

What a run folder holds is :mod:`meta.runs`'s to say. A checkpoint holds everything the next iteration depends on
(θ, optimizer, normalizer, random generators), so ``--resume`` continues a killed run exactly as if it had not
stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from envs.sim import share_cores_with_physics
from meta.algorithms import build
from meta.config import TrainConfig, family_of, to_dict
from meta.distributed import RayWorkers
from meta.outer_loop import combine
from meta.runs import MetricsLog, begin, open_run, save_checkpoints
from meta.worker import InProcess, ShardResult, adopt_noise_state, iteration_state


def make_workers(cfg: TrainConfig) -> InProcess | RayWorkers:
    """Where the meta-batches run: :class:`meta.worker.InProcess`, or Ray workers for ``distributed: ray``."""
    return RayWorkers(cfg) if cfg.distributed == "ray" else InProcess(cfg)


def _mean(parts: list[dict[str, torch.Tensor]], key: str) -> float:
    return torch.cat([p[key] for p in parts]).mean().item()


def train(cfg: TrainConfig | None, resume: str | None = None) -> Path:
    """Meta-train (or continue the run in ``resume``); returns the run folder."""
    cfg, folder, state = open_run(cfg, resume)
    if state is not None and state["iteration"] >= cfg.iterations:
        return (
            folder.path
        )  # finished: evaluating a run resumes its cached baselines, and that must leave them as they are
    share_cores_with_physics()
    family = family_of(cfg)
    task_rng = np.random.default_rng(cfg.seed)
    noise = torch.Generator().manual_seed(cfg.seed)
    learner, normalizer = build(cfg, state)
    start, best = 0, -float("inf")
    if state is not None:
        task_rng.bit_generator.state = state["rng"]["numpy"]
        noise.set_state(state["rng"]["torch"])
        start, best = state["iteration"], state["best"]
    workers = make_workers(cfg)
    begin(folder, cfg)
    log = MetricsLog(folder, start)
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=f"{cfg.algo} {cfg.family}")
    for it in bar:
        began = time.perf_counter()
        tasks = family.sample(task_rng, cfg.meta_batch, "train")
        seeds = tuple(int(s) for s in task_rng.integers(2**31, size=2))
        restarts = workers.restarts
        results: list[ShardResult] = workers.run(iteration_state(learner, normalizer, noise), tasks, seeds)
        outer = learner.apply(combine([r.contribution for r in results]), len(tasks))
        for r in results:
            normalizer.merge(*r.obs_moments)
        adopt_noise_state(noise, results)
        pre, post, steps = [r.pre for r in results], [r.post for r in results], sum(r.env_steps for r in results)
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
        log.add(row)
        with folder.tasks.open("a") as f:
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
        save_checkpoints(folder, ckpt, improved, cfg.checkpoint_every)
        bar.set_postfix(
            pre=f"{row['rollout/pre_return']:.1f}/{row['rollout/pre_success']:.0%}",
            post=f"{row['rollout/post_return']:.1f}/{row['rollout/post_success']:.0%}",
            sps=f"{row['perf/env_steps_per_s']:,.0f}",
        )
    log.close()
    workers.close()
    return folder.path
