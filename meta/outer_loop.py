"""The interface every outer loop offers the trainer, and the factory that picks one by name.

An outer loop owns the meta-learned parameters θ (policy and value function; Meta-SGD adds step sizes). Each
meta-iteration it adapts θ to every task from support rollouts (:meth:`OuterLoop.adapt`); the query rollouts of
the adapted parameters φ give each task's :meth:`OuterLoop.contribution` to the outer step, which
:meth:`OuterLoop.apply` takes. Contributions of disjoint task sets add up (:func:`combine`), so a meta-batch may
be split across processes (``meta/distributed.py``) and its outer step is the one the whole batch would take.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import torch

from agents.gae import gae
from agents.linear_baseline import linear_values
from agents.policy import ActorCritic, Params, stack
from agents.ppo import adapt
from agents.rollout import Rollout, cat_rollouts
from meta.config import ALGOS, loss_weights


class Contribution(NamedTuple):
    """What a set of tasks adds to the outer step."""

    grads: list[torch.Tensor] | None
    """Sum over the tasks of each task's outer gradient, one tensor per :meth:`OuterLoop.meta_parameters` entry."""
    per_task: dict[str, torch.Tensor]
    """Outer-loop metrics of each task, each ``[n]``."""
    rollouts: tuple[Rollout, Rollout] | None
    """Support and query rollouts, for an update that needs the data itself (multitask's PPO epochs)."""


def combine(parts: list[Contribution]) -> Contribution:
    """The contribution of the union of disjoint task sets, listed in task order."""
    first = parts[0]
    grads = None if first.grads is None else [sum(g) for g in zip(*(p.grads for p in parts), strict=True)]
    per_task = {k: torch.cat([p.per_task[k] for p in parts]) for k in first.per_task}
    rollouts = None
    if first.rollouts is not None:
        rollouts = tuple(cat_rollouts([p.rollouts[i] for p in parts]) for i in range(2))
    return Contribution(grads, per_task, rollouts)


def advantages(batch: Rollout, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and value targets of a rollout, ``[T, n, E]`` each, baselined by ``cfg.critic``: the policy's
    value head as collected, or each task's :func:`agents.linear_baseline.linear_values`."""
    values, following = batch.values, batch.next_values
    if cfg.critic == "linear":
        values, following = linear_values(batch.obs, batch.rewards, batch.episode_ends, cfg.gamma)
    return gae(batch.rewards, values, following, batch.episode_ends, cfg.gamma, cfg.gae_lambda)


def step_sizes(cfg, names) -> dict[str, float]:
    """The inner loop's step size of each parameter it adapts (:func:`agents.ppo.adapt`'s ``lr``): ``cfg.inner_lr``
    for every one of ``names``, or with a context (``cfg.context_dim`` > 0, CAVIA) ``cfg.context_lr`` for the
    context alone."""
    return {"context": cfg.context_lr} if cfg.context_dim else dict.fromkeys(names, cfg.inner_lr)


class OuterLoop(abc.ABC):
    """θ and its update rule. ``cfg`` is a :class:`meta.config.TrainConfig`."""

    second_order = False
    """Whether adaptation stays differentiable with respect to θ (MAML, Meta-SGD)."""

    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        self.module, self.cfg = module, cfg
        self.theta = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}

    def advantages(self, batch: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        return advantages(batch, self.cfg)

    def inner_lr(self) -> dict[str, float] | Params:
        return step_sizes(self.cfg, self.theta)

    def adapt(self, support: Rollout) -> tuple[Params, dict[str, float]]:
        """φ_i for every task: ``inner_steps`` PPO steps from θ on task i's support rollout. Returns φ
        (task-stacked ``[n, *shape]``, differentiable in θ when :attr:`second_order`) and inner-loop metrics."""
        c = self.cfg
        adv, ret = self.advantages(support)
        phi, history = adapt(
            self.module,
            stack(self.theta, support.rewards.shape[1]),
            support,
            adv,
            ret,
            c.inner_steps,
            self.inner_lr(),
            self.second_order,
            loss_weights(c),
        )
        first = history[0]  # the losses θ starts from; later steps are the adapted policies' own
        return phi, {f"inner/{k}": first[k] for k in ("loss", "policy_loss", "value_loss", "entropy")}

    def meta_parameters(self) -> list[torch.Tensor]:
        """The tensors the outer step moves (θ; Meta-SGD adds its step sizes)."""
        return list(self.theta.values())

    @abc.abstractmethod
    def contribution(self, phi: Params, support: Rollout, query: Rollout) -> Contribution:
        """What these tasks (``phi`` and rollouts task-stacked ``[n, ...]``) add to the outer step."""

    @abc.abstractmethod
    def apply(self, total: Contribution, n_tasks: int) -> dict[str, float]:
        """Move θ by the combined contribution of all ``n_tasks`` tasks of the meta-batch; return metrics."""

    def update(self, phi: Params, support: Rollout, query: Rollout) -> dict[str, float]:
        """The outer step of one process holding the whole meta-batch."""
        return self.apply(self.contribution(phi, support, query), support.rewards.shape[1])

    def state_dict(self) -> dict:
        return {"theta": {k: v.detach().clone() for k, v in self.theta.items()}}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in self.theta.items():
                v.copy_(state["theta"][k])


def make_outer_loop(cfg, module: ActorCritic, theta: Params) -> OuterLoop:
    """The outer loop ``cfg.algo`` names: maml, fomaml, metasgd, reptile, or the multitask baseline."""
    from meta.maml import FOMAML, MAML, MetaSGD, MultiTask
    from meta.reptile import Reptile

    loops = {"maml": MAML, "fomaml": FOMAML, "metasgd": MetaSGD, "reptile": Reptile, "multitask": MultiTask}
    if cfg.algo not in loops:
        raise ValueError(f"algo={cfg.algo!r} is not allowed: expected one of {', '.join(ALGOS)}")
    return loops[cfg.algo](module, theta, cfg)
