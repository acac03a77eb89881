"""``cheetah``: HalfCheetah running at a hidden target velocity (HalfCheetahVel of the MAML paper).

The classic meta-RL locomotion benchmark, kept for comparison with papers: the model is gymnasium's
HalfCheetah unchanged, only the reward asks for a target forward velocity the policy does not observe.
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from envs.family import Family, Param, SimState, Task, TaskTensors, region

_TRAIN = {"target_velocity": (0.0, 2.0)}


class Cheetah(Family):
    name = "cheetah"
    description = "HalfCheetah asked to run forward at a hidden target velocity."
    asset = "cheetah.xml"
    params = (Param("target_velocity", "forward velocity the reward asks for", 0.0, 3.0, unit="m/s"),)
    train = (_TRAIN,)
    ood = (region(_TRAIN, target_velocity=(2.25, 3.0)),)  # faster than any training target
    varying_fields = frozenset()
    episode_length = 200
    frame_skip = 5
    action_dim = 6
    obs_dim = 17
    success_doc = (
        "when the episode ends (10 s), the average forward velocity since reset is within 0.2 m/s of the target"
    )
    reward_doc = "velocity: -|v_x - target| (m/s); control: -0.05·|a|² (the MAML paper's HalfCheetahVel reward)"

    def spec(self, task: Task) -> mujoco.MjSpec:
        return self.base_spec()  # the task lives only in the reward

    def reset(self, task: TaskTensors, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        # gymnasium HalfCheetah-v5's reset noise: uniform ±0.1 on positions, normal 0.1 on velocities
        like = task["target_velocity"]
        b, m = like.shape[0], self.model0
        qpos = m.qpos0 + rng.uniform(-0.1, 0.1, (b, m.nq))
        qpos[:, 0] = 0.0  # start at x = 0 so the average velocity is x / t
        qvel = 0.1 * rng.standard_normal((b, m.nv))
        return {
            k: torch.as_tensor(v, dtype=like.dtype, device=like.device) for k, v in (("qpos", qpos), ("qvel", qvel))
        }

    def observe(self, state: SimState) -> torch.Tensor:
        return torch.cat([state.qpos[:, 1:], state.qvel], dim=1)

    def reward_terms(self, state: SimState, action: torch.Tensor, task: TaskTensors) -> dict[str, torch.Tensor]:
        return {
            "velocity": -(state.qvel[:, 0] - task["target_velocity"]).abs(),
            "control": -0.05 * action.clamp(-1, 1).square().sum(dim=1).to(state.qvel.dtype),
        }

    def success(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        # the average since reset of a cheetah that keeps speeding up sweeps through every target
        average = state.qpos[:, 0] / state.time.clamp(min=1e-6)
        return self.episode_over(state) & ((average - task["target_velocity"]).abs() < 0.2)
