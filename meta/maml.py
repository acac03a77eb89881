"""MAML and its relatives: the outer objective is the adapted policies' PPO loss on their query rollouts.

- ``MAML``: differentiates through the inner steps (second order; Finn et al. 2017).
- ``FOMAML``: the same gradient without the second-order terms (the inner gradients are constants).
- ``MetaSGD``: MAML that also meta-learns a step size per parameter entry (Li et al. 2017).
- ``MultiTask``: the baseline, plain multi-task PPO on the same data budget.
θ (and Meta-SGD's step sizes) follow Adam with the outer gradient's norm clipped.
"""

from __future__ import annotations

import torch

from agents.policy import ActorCritic, Params, stack
from agents.ppo import ppo_loss
from agents.rollout import Rollout
from meta.outer_loop import OuterLoop


class MAML(OuterLoop):
    second_order = True

    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        super().__init__(module, theta, cfg)
        self.optimizer = torch.optim.Adam(self.meta_parameters(), lr=cfg.outer_lr)

    def meta_parameters(self) -> list[torch.Tensor]:
        return list(self.theta.values())

    def update(self, phi: Params, support: Rollout, query: Rollout) -> dict[str, float]:
        c = self.cfg
        adv, ret = self.advantages(query)
        loss, terms = ppo_loss(self.module, phi, query, adv, ret, c.clip, c.vf_coef, c.ent_coef)
        self.optimizer.zero_grad()
        loss.mean().backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.meta_parameters(), c.max_grad_norm)
        self.optimizer.step()
        return {
            "outer/loss": loss.mean().item(),
            "outer/policy_loss": terms["policy_loss"].mean().item(),
            "outer/value_loss": terms["value_loss"].mean().item(),
            "outer/grad_norm": grad_norm.item(),
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])


class FOMAML(MAML):
    second_order = False


class MetaSGD(MAML):
    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        self.alpha = {k: torch.full_like(v, cfg.inner_lr, requires_grad=True) for k, v in theta.items()}
        super().__init__(module, theta, cfg)

    def meta_parameters(self) -> list[torch.Tensor]:
        return [*self.theta.values(), *self.alpha.values()]

    def inner_lr(self) -> Params:
        return self.alpha

    def state_dict(self) -> dict:
        return {**super().state_dict(), "alpha": {k: v.detach().clone() for k, v in self.alpha.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            for k, v in self.alpha.items():
                v.copy_(state["alpha"][k])


class MultiTask(MAML):
    """Not meta-learning: the baseline a user would pick instead. One policy trained with plain PPO on the rollouts
    of all train tasks (both of each iteration's rollouts are on-policy data for θ), with the same Adam and
    clipping. Adaptation happens only at evaluation, with the same inner loop as the meta-learners."""

    epochs = 4
    """PPO gradient steps per iteration on the iteration's data."""

    def adapt(self, support: Rollout) -> tuple[Params, dict[str, float]]:
        return {k: v.detach() for k, v in stack(self.theta, support.rewards.shape[1]).items()}, {}

    def update(self, phi: Params, support: Rollout, query: Rollout) -> dict[str, float]:
        c = self.cfg
        batches = [(batch, *self.advantages(batch)) for batch in (support, query)]
        for _ in range(self.epochs):
            theta = stack(self.theta, support.rewards.shape[1])
            loss = sum(
                ppo_loss(self.module, theta, b, a, r, c.clip, c.vf_coef, c.ent_coef)[0].mean() for b, a, r in batches
            )
            self.optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.meta_parameters(), c.max_grad_norm)
            self.optimizer.step()
        return {"outer/loss": loss.item(), "outer/grad_norm": grad_norm.item()}
