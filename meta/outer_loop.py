"""The interface every outer loop offers the trainer, and the factory that picks one by name.

An outer loop owns the meta-learned parameters θ (policy and value function; Meta-SGD adds step sizes). Each
meta-iteration the trainer asks it to :meth:`OuterLoop.adapt` θ to every task from support rollouts, collects
query rollouts with the adapted parameters φ, and hands them to :meth:`OuterLoop.update`, which moves θ.
"""

from __future__ import annotations

import abc

import torch

from agents.gae import gae
from agents.policy import ActorCritic, Params, stack
from agents.ppo import adapt
from agents.rollout import Rollout
from meta.config import ALGOS


class OuterLoop(abc.ABC):
    """θ and its update rule. ``cfg`` is a :class:`meta.config.TrainConfig`."""

    second_order = False
    """Whether adaptation stays differentiable with respect to θ (MAML, Meta-SGD)."""

    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        self.module, self.cfg = module, cfg
        self.theta = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}

    def advantages(self, batch: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and value targets of a rollout, ``[T, n, E]`` each."""
        return gae(
            batch.rewards, batch.values, batch.next_values, batch.episode_ends, self.cfg.gamma, self.cfg.gae_lambda
        )

    def inner_lr(self) -> float | Params:
        return self.cfg.inner_lr

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
            c.clip,
            c.vf_coef,
            c.ent_coef,
        )
        first = history[0]  # the losses θ starts from; later steps are the adapted policies' own
        metrics = {f"inner/{k}": first[k].mean().item() for k in ("loss", "policy_loss", "value_loss", "entropy")}
        return phi, metrics

    @abc.abstractmethod
    def update(self, phi: Params, support: Rollout, query: Rollout) -> dict[str, float]:
        """Move θ using the adapted parameters ``phi`` and the query rollouts they collected; return metrics."""

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
