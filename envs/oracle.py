"""The oracle baseline's family: a family whose policy is told the task.

Meta-learning has to find out the task from a few episodes. A policy that sees the task's parameters needs none of
that, so PPO on :class:`OracleFamily` (``TrainConfig.task_in_obs``) is the upper bound a meta-learned initialization
is measured against, not a meta-learner. Everything but the policy's observation is the base family's: the same
tasks, models, rewards, success and scripted controller.
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from envs.family import Family, SimState, Task, TaskTensors


class OracleFamily(Family):
    """``base`` with the task's parameters appended to the policy's observation, each scaled to about [-1, 1].

    A numeric parameter is mapped linearly from the hull of its domains in the family's train and ood regions onto
    [-1, 1]; a categorical one from its index among all its categories (:meth:`Param.encode`). ``obs_dim`` is
    ``base.obs_dim + len(base.params)``; every hook, :meth:`observe` included, is the base family's.
    """

    def __init__(self, base: Family) -> None:
        # Not Family.__init__: the base family has checked its regions and compiled its default model already.
        for name in Family.__annotations__:  # every class attribute a family declares (name, params, regions, …)
            setattr(self, name, getattr(base, name))
        self.obs_dim = base.obs_dim + len(base.params)
        self.base = base
        self._by_name, self.model0 = base._by_name, base.model0
        low, high = [], []
        for p in base.params:
            if p.categorical:
                low.append(0.0)
                high.append(len(p.choices) - 1.0)
            else:
                domains = [r[p.name] for r in (*base.train, *base.ood)]
                low.append(min(d[0] for d in domains))
                high.append(max(d[1] for d in domains))
        self._centre = (np.array(low) + np.array(high)) / 2
        half = (np.array(high) - np.array(low)) / 2
        self._half = np.where(half > 0, half, 1.0)  # a parameter that never varies reads 0

    def policy_observation(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """The base family's observation ``[B, base.obs_dim]`` followed by the scaled parameters ``[B, n_params]``
        in the order of ``params``."""
        obs = self.base.policy_observation(state, task)
        return torch.cat([obs, self.scaled(task).to(obs)], dim=1)

    def scaled(self, task: TaskTensors) -> torch.Tensor:
        """The parameters of the tasks in ``task`` as the policy reads them, ``[B, n_params]``, each about [-1, 1]."""
        like = next(iter(task.values()))
        kw = {"dtype": torch.float64, "device": like.device}
        params = torch.stack([task[p.name].to(**kw) for p in self.params], dim=1)
        return (params - torch.as_tensor(self._centre, **kw)) / torch.as_tensor(self._half, **kw)

    # ---- everything else is the base family's ------------------------------------------------------------------
    def base_spec(self) -> mujoco.MjSpec:
        return self.base.base_spec()

    def spec(self, task: Task) -> mujoco.MjSpec:
        return self.base.spec(task)

    def model(self, task: Task) -> mujoco.MjModel:
        return self.base.model(task)  # the base family's compiled-model cache

    def reset(self, task: TaskTensors, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        return self.base.reset(task, rng)

    def control(self, action: torch.Tensor, state: SimState, task: TaskTensors) -> dict[str, torch.Tensor]:
        return self.base.control(action, state, task)

    def observe(self, state: SimState) -> torch.Tensor:
        return self.base.observe(state)

    def reward_terms(self, state: SimState, action: torch.Tensor, task: TaskTensors) -> dict[str, torch.Tensor]:
        return self.base.reward_terms(state, action, task)

    def success(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return self.base.success(state, task)

    def failed(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return self.base.failed(state, task)

    def scripted_action(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return self.base.scripted_action(state, task)
