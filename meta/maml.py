"""MAML and its relatives: the outer objective is the adapted policies' PPO loss on their query rollouts.

- ``MAML``: differentiates through the inner steps (second order; Finn et al. 2017).
- ``FOMAML``: the same gradient without the second-order terms (the inner gradients are constants).
- ``MetaSGD``: MAML that also meta-learns a step size per parameter entry (Li et al. 2017).
- ``MultiTask``: the baseline, plain multi-task PPO on the same data budget.
θ (and Meta-SGD's step sizes) follow Adam with the outer gradient's norm clipped.
"""

from __future__ import annotations

import dataclasses

import torch

from agents.policy import ActorCritic, Params, stack
from agents.ppo import ppo_loss
from agents.rollout import Rollout
from meta.config import inner_loop
from meta.outer_loop import Contribution, GradientOuterLoop


class MAML(GradientOuterLoop):
    second_order = True

    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        super().__init__(module, theta, cfg)
        self.optimizer = torch.optim.Adam(self.meta_parameters(), lr=cfg.outer_lr)

    def contribution(self, phi: Params, support: Rollout, query: Rollout) -> Contribution:
        adv, ret = self.inner.advantages(query)
        loss, terms = ppo_loss(self.module, phi, query, adv, ret, self.inner.loss)
        grads = list(torch.autograd.grad(loss.sum(), self.meta_parameters()))
        per_task = {"loss": loss.detach(), "policy_loss": terms["policy_loss"], "value_loss": terms["value_loss"]}
        return Contribution(grads, per_task, None)

    def apply(self, total: Contribution, n_tasks: int) -> dict[str, float]:
        for p, g in zip(self.meta_parameters(), total.grads, strict=True):
            p.grad = g / n_tasks  # the gradient of the mean loss over tasks
        return {**self._step(), **{f"outer/{k}": v.mean().item() for k, v in total.per_task.items()}}

    def _step(self) -> dict[str, float]:
        grad_norm = torch.nn.utils.clip_grad_norm_(self.meta_parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        return {"outer/grad_norm": grad_norm.item()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])


class FOMAML(MAML):
    second_order = False


class MetaSGD(MAML):
    def __init__(self, module: ActorCritic, theta: Params, cfg) -> None:
        # The configured step sizes are where the learned ones start; the optimizer (MAML's) moves both.
        rates = inner_loop(cfg, module).rates
        self.alpha = {k: torch.full_like(theta[k], rate, requires_grad=True) for k, rate in rates.items()}
        super().__init__(module, theta, cfg)
        self.inner = dataclasses.replace(self.inner, rates=self.alpha)

    def meta_parameters(self) -> list[torch.Tensor]:
        return [*super().meta_parameters(), *self.alpha.values()]

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
    clipping, in ``cfg.epochs`` full-batch PPO steps per iteration. Adaptation happens only at evaluation, with the
    same inner loop as the meta-learners."""

    def adapt(self, support: Rollout) -> tuple[Params, dict[str, torch.Tensor]]:
        return {k: v.detach() for k, v in stack(self.theta, support.rewards.shape[1]).items()}, {}

    def contribution(self, phi: Params, support: Rollout, query: Rollout) -> Contribution:
        return Contribution(None, {}, (support, query))

    def apply(self, total: Contribution, n_tasks: int) -> dict[str, float]:
        batches = [(batch, *self.inner.advantages(batch)) for batch in total.rollouts]
        for _ in range(self.cfg.epochs):
            theta = stack(self.theta, n_tasks)
            loss = sum(ppo_loss(self.module, theta, b, a, r, self.inner.loss)[0].mean() for b, a, r in batches)
            self.optimizer.zero_grad()
            loss.backward()
            metrics = self._step()
        return {"outer/loss": loss.item(), **metrics}
