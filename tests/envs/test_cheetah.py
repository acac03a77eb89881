"""``cheetah``: success is judged when the episode ends, so speeding up through the target does not count."""

from __future__ import annotations

import json

import numpy as np
import torch

from envs.registry import make_family, parse_task_batch
from envs.vec_env import TaskVecEnv


def test_success_is_judged_only_when_the_episode_ends():
    family = make_family("cheetah")
    batch = json.loads(family.sample(np.random.default_rng(0), 2, "train").to_json())
    batch["tasks"][0]["target_velocity"] = 0.05  # standing still is within 0.2 m/s of it
    batch["tasks"][1]["target_velocity"] = 1.5
    env = TaskVecEnv(family, parse_task_batch(json.dumps(batch)), 2, seed=0)
    env.reset()
    solved_at = []
    for t in range(family.episode_length):
        _, _, _, truncated, info = env.step(torch.zeros(2, 2, 6))
        if info["success"].any():
            solved_at.append(t)
    assert solved_at == [family.episode_length - 1] and truncated.all()
    assert info["is_success"].tolist() == [[True, True], [False, False]]
