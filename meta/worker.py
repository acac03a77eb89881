"""One meta-batch's work between two outer steps (:meth:`meta.outer_loop.OuterLoop.gather`: for gradient learners
support rollouts → adaptation → query rollouts → contribution), in this process or a Ray actor.

The trainer runs one :class:`MetaBatchWorker` in its own process for the whole batch (:class:`InProcess`);
:mod:`meta.distributed` runs one per Ray actor, each on a shard of the batch's tasks. Given θ, the normalizer and the
noise generator at the start of the iteration, a worker's result depends only on its tasks and the seeds.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import torch

from agents.normalizer import ObsNormalizer, moments
from envs.family import TaskBatch
from envs.sim import share_cores_with_physics
from envs.vec_env import TaskVecEnv
from meta.algorithms import build
from meta.config import TrainConfig, family_of
from meta.outer_loop import Contribution, OuterLoop


class ShardResult(NamedTuple):
    """What a worker returns for its tasks of one meta-batch (per-task tensors are ``[n]``)."""

    pre: dict[str, torch.Tensor]
    """Episode statistics before adapting."""
    post: dict[str, torch.Tensor]
    """Episode statistics after adapting."""
    inner: dict[str, torch.Tensor]
    contribution: Contribution
    obs_moments: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    """:func:`agents.normalizer.moments` of the raw observations the policy saw."""
    env_steps: int
    noise_state: torch.Tensor
    """The action-noise generator's state afterwards: the same in every shard, since each draws the whole batch's
    noise (:mod:`envs.noise`)."""
    seconds: float
    """Time the worker spent on it (the rest of an iteration is the learner and the transport)."""


class MetaBatchWorker:
    """Rollouts, adaptation and the outer-loop contribution of a meta-batch's tasks, or of a shard of them.

    :param nthread: threads of the CPU engine (a Ray worker's reserved cores; default: the cores available).
    """

    def __init__(self, cfg: TrainConfig, nthread: int | None = None) -> None:
        share_cores_with_physics()
        self.learner, self.normalizer = build(cfg)
        family = family_of(cfg)
        placeholder = family.sample(0, 1)
        sim = dataclasses.replace(cfg.sim, nthread=nthread)
        self.env = TaskVecEnv(family, placeholder, cfg.envs_per_task, sim, seed=cfg.seed)
        self.noise = torch.Generator()

    def run(self, state: dict, tasks: TaskBatch, shard: tuple[int, int], seeds: tuple) -> ShardResult:
        """:param state: the learner's, the normalizer's and the noise generator's state (:func:`iteration_state`).
        :param shard: ``(first, total)``: ``tasks`` are tasks ``first …`` of a meta-batch of ``total``."""
        began = time.perf_counter()
        self.learner.load_state_dict(state["learner"])
        self.normalizer.load_state_dict(state["normalizer"])
        self.noise.set_state(state["noise"])
        self.env.set_tasks(tasks, shard=shard)
        g = self.learner.gather(self.env, self.normalizer, self.noise, seeds)
        obs, seconds = moments(g.raw_obs), time.perf_counter() - began
        return ShardResult(g.pre, g.post, g.inner, g.contribution, obs, g.env_steps, self.noise.get_state(), seconds)


class InProcess:
    """The whole meta-batch on one :class:`MetaBatchWorker` in this process."""

    restarts = 0

    def __init__(self, cfg: TrainConfig) -> None:
        self.worker = MetaBatchWorker(cfg)

    def run(self, state: dict, tasks: TaskBatch, seeds: tuple) -> list[ShardResult]:
        return [self.worker.run(state, tasks, (0, len(tasks)), seeds)]

    def close(self) -> None:
        pass


def iteration_state(learner: OuterLoop, normalizer: ObsNormalizer, noise: torch.Generator) -> dict:
    """What the workers need from the learner at the start of an iteration."""
    return {"learner": learner.state_dict(), "normalizer": normalizer.state_dict(), "noise": noise.get_state()}


def adopt_noise_state(noise: torch.Generator, results: list[ShardResult]) -> None:
    """Continue the learner's action-noise stream where the workers left it (all shards agree)."""
    if any(not torch.equal(r.noise_state, results[0].noise_state) for r in results[1:]):
        raise RuntimeError("workers disagree on the action-noise stream: their shards drew different amounts")
    noise.set_state(results[0].noise_state)
