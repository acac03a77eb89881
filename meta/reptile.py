"""Reptile (Nichol et al. 2018): after ``inner_steps`` of PPO per task, θ ← θ + ε · mean_i(φ_i − θ).

No query gradient is needed; the query rollouts only measure how well the adapted policies do.
"""

from __future__ import annotations

import torch

from agents.policy import Params
from agents.rollout import Rollout
from meta.outer_loop import OuterLoop


class Reptile(OuterLoop):
    def update(self, phi: Params, support: Rollout, query: Rollout) -> dict[str, float]:
        eps = self.cfg.reptile_epsilon
        with torch.no_grad():
            step = {k: phi[k].detach().mean(0) - v for k, v in self.theta.items()}
            for k, v in self.theta.items():
                v.add_(eps * step[k])
        return {"outer/step_norm": eps * torch.sqrt(sum(s.square().sum() for s in step.values())).item()}
