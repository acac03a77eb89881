"""The in-context learners' PPO losses carry every term the settings name, and their advantages the critic it names,
as the gradient learners' do."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from envs.vec_env import TaskVecEnv
from meta.algorithms import build
from meta.config import TrainConfig, family_of


@pytest.mark.parametrize("algo", ["rl2", "context"])
def test_an_in_context_learner_pulls_an_action_mean_far_past_the_bounds_back(algo: str):
    cfg = TrainConfig(
        family="point", algo=algo, meta_batch=2, envs_per_task=2, trial_episodes=1, hidden=(16,), memory=16,
        bound_coef=2.0,
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


@pytest.mark.parametrize("algo", ["rl2", "context"])
def test_an_in_context_learner_baselines_by_its_value_head_unless_told_the_linear_critic(algo: str):
    cfg = TrainConfig(
        family="point", algo=algo, meta_batch=2, envs_per_task=2, trial_episodes=2, hidden=(16,), memory=16
    )
    assert cfg.resolved_critic == "value"  # rl2's and context's default: the value head reads the memory or posterior
    learner, normalizer = build(cfg)
    family = family_of(cfg)
    env = TaskVecEnv(family, family.sample(0, 2), 2)
    (rollout,) = learner.gather(env, normalizer, torch.Generator().manual_seed(0), (1, 2)).contribution.rollouts
    scrambled = rollout._replace(values=torch.randn_like(rollout.values))
    if algo == "context":
        scrambled = scrambled._replace(next_values=torch.randn_like(rollout.next_values))
    statistics = learner.returns.state_dict()

    def advantages(r):  # each call from the same reward scale (advantages() folds the rollout's returns into it)
        learner.returns.load_state_dict(statistics)
        return learner.advantages(r)

    by_value_head = advantages(rollout)
    assert not torch.allclose(advantages(scrambled)[0], by_value_head[0])
    learner.cfg = dataclasses.replace(cfg, critic="linear")
    by_fit = advantages(rollout)
    torch.testing.assert_close(advantages(scrambled), by_fit)  # each task's own fit: the value head plays no part
    assert not torch.allclose(by_fit[0], by_value_head[0])


def test_rl2_without_gae_across_episodes_stops_each_episodes_advantages_at_its_end():
    cfg = TrainConfig(
        family="point", algo="rl2", meta_batch=2, envs_per_task=2, trial_episodes=2, hidden=(16,), memory=16
    )
    learner, normalizer = build(cfg)
    family = family_of(cfg)
    env = TaskVecEnv(family, family.sample(0, 2), 2)
    (trial,) = learner.gather(env, normalizer, torch.Generator().manual_seed(0), (1, 2)).contribution.rollouts
    first_episode_end = trial.episode_ends & ~trial.ends
    assert first_episode_end.any()  # every world's first episode ends inside its trial
    statistics = learner.returns.state_dict()
    for across in (True, False):
        learner.cfg = dataclasses.replace(cfg, gae_across_episodes=across)
        learner.returns.load_state_dict(statistics)
        advantages, _ = learner.advantages(trial)
        own = trial.rewards / learner.reward_scale() - trial.values  # δ with nothing after the episode
        stops = torch.isclose(advantages, own, atol=1e-5)[first_episode_end]
        assert stops.all() if not across else not stops.any()
