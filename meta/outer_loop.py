"""The interface every outer loop offers the trainer.

An outer loop owns the meta-learned parameters θ (policy and value function; Meta-SGD adds step sizes) and the
inner loop that adapts them (:class:`agents.inner_loop.InnerLoop`). Each meta-iteration it adapts θ to every task
from support rollouts (:meth:`OuterLoop.adapt`); the query rollouts of
the adapted parameters φ give each task's :meth:`OuterLoop.contribution` to the outer step, which
:meth:`OuterLoop.apply` takes. Contributions of disjoint task sets add up (:func:`combine`), so a meta-batch may
be split across processes (:mod:`meta.distributed`) and its outer step is the one the whole batch would take.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import torch

from agents.policy import ActorCritic, Params, stack
from agents.rollout import Rollout, cat_rollouts
from meta.config import inner_loop


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


class OuterLoop(abc.ABC):
    """θ and its update rule. ``cfg`` is a :class:`meta.config.TrainConfig`."""

    second_order = False
    """Whether adaptation stays differentiable with respect to θ (MAML, Meta-SGD)."""

    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        self.module, self.cfg = module, cfg
        self.theta = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
        self.inner = inner_loop(cfg, module, self.second_order)

    def adapt(self, support: Rollout) -> tuple[Params, dict[str, torch.Tensor]]:
        """φ_i for every task: the inner loop from θ on task i's support rollout. Returns φ (task-stacked
        ``[n, *shape]``, differentiable in θ) and the inner loop's diagnostics as ``inner/<name>``, each ``[n]``."""
        phi, diagnostics = self.inner.adapt(stack(self.theta, support.rewards.shape[1]), support)
        return phi, {f"inner/{k}": v for k, v in diagnostics.items()}

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
