"""The interface every outer loop offers the trainer, and the one of the gradient learners.

An outer loop owns the meta-learned parameters θ. Each meta-iteration, :meth:`OuterLoop.gather` runs the tasks of a
meta-batch (or of a shard of it) and returns their :class:`Contribution` to the outer step, which
:meth:`OuterLoop.apply` takes. Contributions of disjoint task sets add up (:func:`combine`), so a meta-batch may be
split across processes (:mod:`meta.distributed`) and its outer step is the one the whole batch would take.

A :class:`GradientOuterLoop` also owns the inner loop that adapts θ (:class:`agents.inner_loop.InnerLoop`): it adapts
θ to every task from support rollouts (:meth:`GradientOuterLoop.adapt`), and the query rollouts of the adapted φ give
each task's :meth:`GradientOuterLoop.contribution`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import NamedTuple

import torch

from agents.inner_loop import Adaptation
from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, init_params, stack
from agents.rollout import Rollout, cat_rollouts
from envs.family import Family
from envs.vec_env import TaskVecEnv
from meta.config import inner_loop


class Contribution(NamedTuple):
    """What a set of tasks adds to the outer step."""

    grads: list[torch.Tensor] | None
    """Sum over the tasks of each task's outer gradient, one tensor per :meth:`OuterLoop.meta_parameters` entry."""
    per_task: dict[str, torch.Tensor]
    """Outer-loop metrics of each task, each ``[n]``."""
    rollouts: tuple | None
    """Rollouts (each ``[T, n, E, ...]``), for an update that needs the data itself (multitask's PPO epochs on
    support and query, RL²'s on its trials)."""


def combine(parts: list[Contribution]) -> Contribution:
    """The contribution of the union of disjoint task sets, listed in task order."""
    first = parts[0]
    grads = None if first.grads is None else [sum(g) for g in zip(*(p.grads for p in parts), strict=True)]
    per_task = {k: torch.cat([p.per_task[k] for p in parts]) for k in first.per_task}
    rollouts = None
    if first.rollouts is not None:
        rollouts = tuple(cat_rollouts([p.rollouts[i] for p in parts]) for i in range(len(first.rollouts)))
    return Contribution(grads, per_task, rollouts)


class Gathered(NamedTuple):
    """What one process's share of a meta-batch gives the learner (per-task tensors are ``[n]``)."""

    pre: dict[str, torch.Tensor]
    """Episode statistics before adapting (``rollout/pre_*``: round 0)."""
    post: dict[str, torch.Tensor]
    """Episode statistics after adapting (``rollout/post_*``: the last round)."""
    inner: dict[str, torch.Tensor]
    """Adaptation diagnostics, as ``inner/<name>``."""
    contribution: Contribution
    raw_obs: torch.Tensor
    """Every observation the policy saw before normalization, ``[..., obs_dim]`` (to update the normalizer)."""
    env_steps: int
    """Env steps these tasks took."""


class OuterLoop(abc.ABC):
    """θ and its update rule: what the trainer, the workers and evaluation ask of every learner. ``cfg`` is a
    :class:`meta.config.TrainConfig`."""

    def __init__(self, module: torch.nn.Module, theta: Params, cfg) -> None:
        self.module, self.cfg = module, cfg
        self.theta = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}

    @staticmethod
    def network(cfg, family: Family) -> tuple[torch.nn.Module, Params, ObsNormalizer]:
        """The learner's network for ``family``, its initial θ and the normalizer of what it observes: an
        :class:`agents.policy.ActorCritic`."""
        module = ActorCritic(family.obs_dim, family.action_dim, cfg.hidden, cfg.context_dim)
        return module, init_params(module, cfg.seed, cfg.log_std_init), ObsNormalizer(family.obs_dim, cfg.normalize_obs)

    @abc.abstractmethod
    def gather(
        self, env: TaskVecEnv, normalizer: ObsNormalizer, noise: torch.Generator, seeds: tuple[int, int]
    ) -> Gathered:
        """Everything an iteration needs from the tasks ``env`` holds (the whole meta-batch or a shard of it)."""

    @abc.abstractmethod
    def apply(self, total: Contribution, n_tasks: int) -> dict[str, float]:
        """Move θ by the combined contribution of all ``n_tasks`` tasks of the meta-batch; return metrics."""

    @abc.abstractmethod
    def adaptation(self) -> Adaptation:
        """How evaluation adapts this learner's θ to a task, round by round."""

    def meta_parameters(self) -> list[torch.Tensor]:
        """The tensors the outer step moves (θ; Meta-SGD adds its step sizes)."""
        return list(self.theta.values())

    def state_dict(self) -> dict:
        return {"theta": {k: v.detach().clone() for k, v in self.theta.items()}}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in self.theta.items():
                v.copy_(state["theta"][k])


class GradientOuterLoop(OuterLoop):
    """An outer loop over the inner loop (:class:`agents.inner_loop.InnerLoop`): each iteration adapts θ to every
    task by gradient steps on its support rollout, and the query rollouts of the adapted φ give the outer step."""

    second_order = False
    """Whether adaptation stays differentiable with respect to θ (MAML, Meta-SGD)."""

    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        super().__init__(module, theta, cfg)
        self.inner = inner_loop(cfg, module, self.second_order)

    def adaptation(self) -> Adaptation:
        """The inner loop, one PPO step per round of support episodes, first order, step sizes fixed (Meta-SGD's
        learned ones, CAVIA's context alone)."""
        rates = {k: v.detach() if torch.is_tensor(v) else v for k, v in self.inner.rates.items()}
        return dataclasses.replace(self.inner, steps=1, second_order=False, rates=rates)

    def gather(
        self, env: TaskVecEnv, normalizer: ObsNormalizer, noise: torch.Generator, seeds: tuple[int, int]
    ) -> Gathered:
        """Support rollouts of θ, φ_i = adapt(θ, support_i), query rollouts of φ (fresh episodes, never the support
        ones), and their contribution."""
        support, phi, inner, query = self.adapt_and_measure(env, normalizer, noise, seeds)
        steps = 2 * support.rewards.numel()
        raw = torch.cat([support.raw_obs, query.raw_obs])
        return Gathered(support.stats, query.stats, inner, self.contribution(phi, support, query), raw, steps)

    def adapt_and_measure(
        self, env: TaskVecEnv, normalizer: ObsNormalizer, noise: torch.Generator, seeds: tuple[int, int]
    ) -> tuple[Rollout, Params, dict[str, torch.Tensor], Rollout]:
        """``(support, φ, inner-loop metrics [n] each, query)`` of :meth:`gather`; ``φ`` keeps its graph to θ when
        the learner differentiates through adaptation."""
        steps = env.family.episode_length
        support = self.inner.collect(stack(self.theta, env.n_tasks), env, normalizer, steps, noise, seeds[0])
        phi, metrics = self.adapt(support)
        query = self.inner.collect(phi, env, normalizer, steps, noise, seeds[1])
        return support, phi, metrics, query

    def adapt(self, support: Rollout) -> tuple[Params, dict[str, torch.Tensor]]:
        """φ_i for every task: the inner loop from θ on task i's support rollout. Returns φ (task-stacked
        ``[n, *shape]``, differentiable in θ) and the inner loop's diagnostics as ``inner/<name>``, each ``[n]``."""
        phi, diagnostics = self.inner.adapt(stack(self.theta, support.rewards.shape[1]), support)
        return phi, {f"inner/{k}": v for k, v in diagnostics.items()}

    @abc.abstractmethod
    def contribution(self, phi: Params, support: Rollout, query: Rollout) -> Contribution:
        """What these tasks (``phi`` and rollouts task-stacked ``[n, ...]``) add to the outer step."""

    def update(self, phi: Params, support: Rollout, query: Rollout) -> dict[str, float]:
        """The outer step of one process holding the whole meta-batch."""
        return self.apply(self.contribution(phi, support, query), support.rewards.shape[1])
