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
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from agents.normalizer import ObsNormalizer, moments
from agents.policy import ActorCritic, Params, init_params, stack
from agents.rollout import Rollout, collect
from envs.family import TaskBatch
from envs.vec_env import TaskVecEnv
from meta import checkpoint
from meta.config import TrainConfig, family_of, from_dict, load_yaml, save_yaml, saved_config, to_dict
from meta.outer_loop import Contribution, OuterLoop, combine, make_outer_loop


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.family}-{cfg.algo}-seed{cfg.seed}-{stamp}"


FAMILY_RECORD = "family.json"
"""A run's record of the family it trains on (:meth:`envs.family.Family.identity`, as JSON): ``config.yaml`` names
the family, not what the family was when the run trained."""


def family_changes(run: Path, cfg: TrainConfig) -> list[str]:
    """The keys of the family's identity that differ from what ``run`` recorded (empty when it recorded none)."""
    path = run / FAMILY_RECORD
    if not path.is_file():
        return []
    then, now = json.loads(path.read_text()), json.loads(json.dumps(family_of(cfg).identity()))
    return sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))


def open_run(cfg: TrainConfig | None, resume: str | None) -> tuple[TrainConfig, Path, dict | None]:
    """The run's config, folder and (when resuming) its latest checkpoint. Everything is checked before anything
    is written, so bad input leaves no file changed."""
    if resume is not None:
        run = Path(resume)
        cfg, state = read_checkpoint(run, "latest")
        changed = family_changes(run, cfg)
        if changed:
            raise ValueError(
                f"{run}: the {cfg.family} family changed since this run began (its {changed[0]} differs): "
                "continuing would train on another family; start a new run"
            )
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
    family = family_of(cfg)
    module = ActorCritic(family.obs_dim, family.action_dim, cfg.hidden, cfg.context_dim)
    learner = make_outer_loop(cfg, module, init_params(module, cfg.seed, cfg.log_std_init))
    normalizer = ObsNormalizer(family.obs_dim, cfg.normalize_obs)
    if state is not None:
        learner.load_state_dict(state["learner"])
        normalizer.load_state_dict(state["normalizer"])
    return learner, normalizer


def load_run(run: str | Path, which: str = "latest") -> tuple[TrainConfig, OuterLoop, ObsNormalizer]:
    """A trained run's config, outer loop and normalizer from ``checkpoints/<which>.pt`` (``latest`` or ``best``);
    a run trained on another version of its family (one-line ``ValueError``) is not taken for one of this."""
    cfg, state = read_checkpoint(Path(run), which)
    changed = family_changes(Path(run), cfg)
    if changed:
        raise ValueError(
            f"{run} was trained on another version of the {cfg.family} family (its {changed[0]} differs): use the "
            "code it was trained with, or train it again"
        )
    return (cfg, *build(cfg, state))


def run_config(run: Path) -> TrainConfig:
    """The config a run folder's ``config.yaml`` holds (one-line ``ValueError`` if it has none)."""
    if not (run / "config.yaml").is_file():
        raise ValueError(f"{run}: not a run folder (no config.yaml)")
    return saved_config(load_yaml(run / "config.yaml"), where=str(run / "config.yaml"))


def read_checkpoint(run: Path, which: str) -> tuple[TrainConfig, dict]:
    """A run's config and its checkpoint ``which``, checked to belong together (one-line ``ValueError`` if not)."""
    cfg = run_config(run)
    state = checkpoint.load(run / "checkpoints" / f"{which}.pt")
    saved = state.get("config")
    # Through saved_config, so that a checkpoint written before a config field existed compares with what it meant.
    if not isinstance(saved, dict) or to_dict(saved_config(saved, where=f"checkpoints/{which}.pt")) != to_dict(cfg):
        raise ValueError(f"{run}: checkpoints/{which}.pt belongs to another run (its config differs)")
    return cfg, state


def adapt_and_measure(
    env: TaskVecEnv, learner: OuterLoop, normalizer: ObsNormalizer, noise: torch.Generator, seeds: tuple[int, int]
) -> tuple[Rollout, Params, dict[str, torch.Tensor], Rollout]:
    """Adaptation to the tasks ``env`` holds: support rollouts of θ, φ_i = adapt(θ, support_i), query rollouts of φ
    (fresh episodes, never the support ones). Returns ``(support, φ, inner-loop metrics [n] each, query)``; ``φ``
    keeps its graph to θ when the learner differentiates through adaptation."""
    steps = env.family.episode_length
    theta = {k: v.detach() for k, v in stack(learner.theta, env.n_tasks).items()}
    support = collect(env, learner.module, theta, normalizer, steps, noise, seeds[0])
    phi, inner = learner.adapt(support)
    query = collect(env, learner.module, {k: v.detach() for k, v in phi.items()}, normalizer, steps, noise, seeds[1])
    return support, phi, inner, query


class ShardResult(NamedTuple):
    """What a worker returns for its tasks of one meta-batch (per-task tensors are ``[n]``)."""

    support_stats: dict[str, torch.Tensor]
    query_stats: dict[str, torch.Tensor]
    inner: dict[str, torch.Tensor]
    contribution: Contribution
    obs_moments: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    """:func:`agents.normalizer.moments` of the raw observations of both rollouts."""
    noise_state: torch.Tensor
    """The action-noise generator's state afterwards: the same in every shard, since each draws the whole batch's
    noise (:mod:`envs.noise`)."""
    seconds: float
    """Time the worker spent on it (the rest of an iteration is the learner and the transport)."""


class MetaBatchWorker:
    """Rollouts, adaptation and the outer-loop contribution of a meta-batch's tasks, or of a shard of them.

    The trainer runs one in its own process for the whole batch; ``meta/distributed.py`` runs one per Ray actor.
    Given θ, the normalizer and the noise generator at the start of the iteration, its result depends only on the
    tasks and seeds.
    """

    def __init__(self, cfg: TrainConfig, nthread: int | None = None) -> None:
        torch.set_num_threads(1)  # torch shares the cores with MuJoCo's thread pool (shared/FACTS.md)
        self.learner, self.normalizer = build(cfg)
        family = family_of(cfg)
        placeholder = family.sample(0, 1)
        self.env = TaskVecEnv(family, placeholder, cfg.envs_per_task, cfg.backend, cfg.device, cfg.seed, nthread)
        self.noise = torch.Generator()

    def run(self, state: dict, tasks: TaskBatch, shard: tuple[int, int], seeds: tuple) -> ShardResult:
        """:param state: the learner's, the normalizer's and the noise generator's state (:func:`iteration_state`).
        :param shard: ``(first, total)``: ``tasks`` are tasks ``first …`` of a meta-batch of ``total``."""
        began = time.perf_counter()
        self.learner.load_state_dict(state["learner"])
        self.normalizer.load_state_dict(state["normalizer"])
        self.noise.set_state(state["noise"])
        self.env.set_tasks(tasks, shard=shard)
        support, phi, inner, query = adapt_and_measure(self.env, self.learner, self.normalizer, self.noise, seeds)
        contribution = self.learner.contribution(phi, support, query)
        obs = moments(torch.cat([support.raw_obs, query.raw_obs]))
        seconds = time.perf_counter() - began
        return ShardResult(support.stats, query.stats, inner, contribution, obs, self.noise.get_state(), seconds)


class InProcess:
    """The whole meta-batch on one :class:`MetaBatchWorker` in this process."""

    restarts = 0

    def __init__(self, cfg: TrainConfig) -> None:
        self.worker = MetaBatchWorker(cfg)

    def run(self, state: dict, tasks: TaskBatch, seeds: tuple) -> list[ShardResult]:
        return [self.worker.run(state, tasks, (0, len(tasks)), seeds)]

    def close(self) -> None:
        pass


def make_workers(cfg: TrainConfig):
    """Where the meta-batches run: :class:`InProcess`, or Ray workers for ``distributed: ray``."""
    if cfg.distributed == "ray":
        from meta.distributed import RayWorkers

        return RayWorkers(cfg)
    return InProcess(cfg)


def iteration_state(learner: OuterLoop, normalizer: ObsNormalizer, noise: torch.Generator) -> dict:
    """What the workers need from the learner at the start of an iteration."""
    return {"learner": learner.state_dict(), "normalizer": normalizer.state_dict(), "noise": noise.get_state()}


def adopt_noise_state(noise: torch.Generator, results: list[ShardResult]) -> None:
    """Continue the learner's action-noise stream where the workers left it (all shards agree)."""
    if any(not torch.equal(r.noise_state, results[0].noise_state) for r in results[1:]):
        raise RuntimeError("workers disagree on the action-noise stream: their shards drew different amounts")
    noise.set_state(results[0].noise_state)


def _mean(parts: list[dict[str, torch.Tensor]], key: str) -> float:
    return torch.cat([p[key] for p in parts]).mean().item()


def train(cfg: TrainConfig | None, resume: str | None = None) -> Path:
    """Meta-train (or continue the run in ``resume``); returns the run folder."""
    cfg, run, state = open_run(cfg, resume)
    if state is not None and state["iteration"] >= cfg.iterations:
        return run  # finished: evaluating a run resumes its cached baselines, and that must leave them as they are
    torch.set_num_threads(1)  # torch shares the cores with MuJoCo's thread pool (shared/FACTS.md)
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
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run / "config.yaml")
    (run / FAMILY_RECORD).write_text(json.dumps(family.identity(), indent=1) + "\n")
    log = MetricsLog(run, start)
    steps_per_rollout = family.episode_length * cfg.meta_batch * cfg.envs_per_task
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations, desc=f"{cfg.algo} {cfg.family}")
    for it in bar:
        began = time.perf_counter()
        tasks = family.sample(task_rng, cfg.meta_batch, "train")
        seeds = tuple(int(s) for s in task_rng.integers(2**31, size=2))
        restarts = workers.restarts
        results = workers.run(iteration_state(learner, normalizer, noise), tasks, seeds)
        outer = learner.apply(combine([r.contribution for r in results]), len(tasks))
        for r in results:
            normalizer.merge(*r.obs_moments)
        adopt_noise_state(noise, results)
        support, query = [r.support_stats for r in results], [r.query_stats for r in results]
        seconds = time.perf_counter() - began
        row = {
            "iteration": it + 1,
            "env_steps": (it + 1) * 2 * steps_per_rollout,
            "rollout/pre_return": _mean(support, "return"),
            "rollout/pre_success": _mean(support, "success"),
            "rollout/post_return": _mean(query, "return"),
            "rollout/post_success": _mean(query, "success"),
            **{k: _mean([r.inner for r in results], k) for k in results[0].inner},
            **outer,
            "perf/env_steps_per_s": 2 * steps_per_rollout / seconds,
            "perf/iteration_s": seconds,
        }
        if cfg.distributed != "none":
            row["perf/worker_restarts"] = workers.restarts - restarts
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
    workers.close()
    return run
