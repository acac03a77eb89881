"""Reptile (Nichol et al. 2018): after ``inner_steps`` of PPO per task, θ ← θ + ε · mean_i(φ_i − θ).

No query gradient is needed; the query rollouts only measure how well the adapted policies do.
"""

from __future__ import annotations

import torch

from agents.policy import Params
from agents.rollout import Rollout
from meta.outer_loop import Contribution, GradientOuterLoop


class Reptile(GradientOuterLoop):
    def contribution(self, phi: Params, support: Rollout, query: Rollout) -> Contribution:
        # The step is θ ← θ − ε · mean_i(θ − φ_i): θ − φ_i plays the part of a gradient.
        return Contribution([(v - phi[k].detach()).sum(0) for k, v in self.theta.items()], {}, None)

    def apply(self, total: Contribution, n_tasks: int) -> dict[str, float]:
        eps = self.cfg.reptile_epsilon
        with torch.no_grad():
            for v, g in zip(self.theta.values(), total.grads, strict=True):
                v.sub_(eps * g / n_tasks)
        norm = torch.sqrt(sum(g.square().sum() for g in total.grads)) / n_tasks
        return {"outer/step_norm": eps * norm.item()}
