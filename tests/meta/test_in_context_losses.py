"""The in-context learners' PPO losses carry every term the settings name, as the gradient learners' do."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from envs.vec_env import TaskVecEnv
from meta.algorithms import build
from meta.config import TrainConfig, family_of


@pytest.mark.parametrize("algo", ["rl2", "context"])
def test_an_in_context_learner_pulls_an_action_mean_far_past_the_bounds_back(algo: str):
    cfg = dataclasses.replace(
        TrainConfig(), family="point", algo=algo, meta_batch=2, envs_per_task=2, trial_episodes=1, hidden=(16,),
        memory=16, bound_coef=2.0,
    )  # fmt: skip
    learner, normalizer = build(cfg)
    with torch.no_grad():  # every action's mean 5, where σ = 1: 2 past the 1 + 2σ the bound loss allows
        learner.theta["pi.2.weight"].zero_()
        learner.theta["pi.2.bias"].fill_(5.0)
    family = family_of(cfg)
    env = TaskVecEnv(family, family.sample(0, 2), 2)
    (rollout,) = learner.gather(env, normalizer, torch.Generator().manual_seed(0), (1, 2)).contribution.rollouts
    advantages, returns = learner.advantages(rollout)
    with_bound, _ = learner.loss(rollout, advantages, returns)
    learner.cfg = dataclasses.replace(cfg, bound_coef=0.0)
    without, _ = learner.loss(rollout, advantages, returns)
    expected = 2.0 * family.action_dim * (5.0 - 1 - 2) ** 2  # bound_coef · Σ over actions of (|μ| − 1 − 2σ)²
    torch.testing.assert_close((with_bound - without).item(), expected, rtol=1e-5, atol=1e-5)
    (grad,) = torch.autograd.grad(with_bound - without, learner.theta["pi.2.bias"])
    assert torch.all(grad > 0)  # a gradient step lowers the mean toward the bounds
