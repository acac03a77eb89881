"""``point``: a puck navigates to a hidden goal on a plane (the 2-D navigation task of the MAML paper).

The goal is hidden from the observation, so the policy must find it from reward: one adaptation step
on a few episodes should turn a policy that wanders into one that heads for the goal.
"""

from __future__ import annotations

import math

import mujoco
import torch

from envs.family import Family, Param, SimState, Task, TaskTensors, region

_TRAIN = {"goal_angle": (0.0, 270.0), "goal_radius": (0.3, 1.0)}


class Point(Family):
    name = "point"
    description = "Point mass on a plane driving to a hidden goal; the goal's angle and radius vary."
    asset = "point.xml"
    params = (
        Param(
            "goal_angle",
            "direction of the goal from the start, counter-clockwise from +x",
            0.0,
            360.0,
            unit="deg",
        ),
        Param("goal_radius", "distance of the goal from the start", 0.3, 1.5, unit="m"),
    )
    train = (_TRAIN,)
    ood = (
        region(_TRAIN, goal_angle=(285.0, 345.0)),  # a sector never seen in training
        region(_TRAIN, goal_radius=(1.2, 1.5)),  # farther than any training goal
    )
    varying_fields = frozenset({"geom_pos"})
    episode_length = 50
    frame_skip = 5
    action_dim = 2
    obs_dim = 4
    success_doc = "puck centre within 0.1 m of the goal"
    reward_doc = "distance: minus the distance to the goal (m); control: -0.01·|a|²"
    scripted_success = 0.95

    def spec(self, task: Task) -> mujoco.MjSpec:
        s = self.base_spec()
        s.geom("goal").pos[:2] = self._goal_xy(task["goal_angle"], task["goal_radius"])
        return s

    @staticmethod
    def _goal_xy(angle_deg, radius):
        a = angle_deg * (math.pi / 180)
        if isinstance(a, torch.Tensor):
            return torch.stack([radius * torch.cos(a), radius * torch.sin(a)], dim=-1)
        return [radius * math.cos(a), radius * math.sin(a)]

    def _to_goal(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Vector from the puck to the goal ``[B, 2]``."""
        return self._goal_xy(task["goal_angle"], task["goal_radius"]) - state.qpos[:, :2]

    def observe(self, state: SimState) -> torch.Tensor:
        return torch.cat([state.qpos[:, :2], state.qvel[:, :2]], dim=1)

    def reward_terms(self, state: SimState, action: torch.Tensor, task: TaskTensors) -> dict[str, torch.Tensor]:
        return {
            "distance": -self._to_goal(state, task).norm(dim=1),
            "control": -0.01 * action.clamp(-1, 1).square().sum(dim=1).to(state.qpos.dtype),
        }

    def success(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return self._to_goal(state, task).norm(dim=1) < 0.1

    def scripted_action(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return (4.0 * self._to_goal(state, task)).clamp(-1, 1)
