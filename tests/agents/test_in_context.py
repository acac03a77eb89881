"""The in-context learners' pieces: RL²'s memory carries across the episodes of a trial and starts empty for a new
task; a context learner's posterior is the product of the prior and every transition's factor, whatever their order;
both answer the adaptation interface (a policy per task, an MLP for SB3 where there is one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.context import (
    ContextActorCritic,
    ContextAdaptation,
    collect_context,
    init_context_params,
    kl_to_prior,
    posterior,
)
from agents.normalizer import ObsNormalizer
from agents.policy import mean_action
from agents.recurrent import MemoryAdaptation, RecurrentActorCritic, collect_trial, init_recurrent_params
from envs.registry import make_family
from envs.vec_env import TaskVecEnv


@pytest.fixture(scope="module")
def point():
    return make_family("point")


def recurrent(point):
    module = RecurrentActorCritic(point.obs_dim, point.action_dim, memory=16, hidden=(16,))
    return module, init_recurrent_params(module, 0), ObsNormalizer(module.input_dim, enabled=False)


def test_a_trial_carries_the_memory_across_episodes_and_starts_it_empty(point):
    module, theta, normalizer = recurrent(point)
    env = TaskVecEnv(point, point.sample(0, 3), 2)
    trial = collect_trial(env, module, theta, normalizer, 3, torch.Generator().manual_seed(0), seed=1)
    horizon = point.episode_length
    assert trial.obs.shape == (3 * horizon, 3, 2, module.input_dim)
    assert torch.all(trial.hidden[0] == 0)  # a new task's trial starts with an empty memory
    assert torch.all(trial.hidden[horizon].abs().sum(-1) > 0)  # the second episode starts with the first's memory
    flags = trial.raw_obs[..., -1]
    assert torch.all(flags[[0, horizon, 2 * horizon]] == 1) and flags.sum() == 3 * 3 * 2  # episode starts only
    assert torch.all(trial.valid) and torch.all(trial.ends[-1]) and trial.ends.sum() == 6
    assert trial.stats["episode_success"].shape == (3, 3) and trial.stats["return"].shape == (3,)


def test_the_memory_adaptation_runs_support_in_one_world_and_measures_from_copies_of_its_memory(point):
    module, theta, normalizer = recurrent(point)
    adaptation = MemoryAdaptation(module)
    assert adaptation.support_layout(6, point.episode_length) == (1, 6 * point.episode_length)
    tasks = point.sample(0, 2, "test")
    state = adaptation.start(theta, 2)
    support = adaptation.collect(
        state, TaskVecEnv(point, tasks, 1), normalizer, 2 * point.episode_length, torch.Generator().manual_seed(0), 3
    )
    after, _ = adaptation.adapt(state, support)
    assert not torch.equal(after.hidden, state.hidden)
    # measuring does not change the state, and every evaluation world starts from the task's memory
    measured = adaptation.collect(
        after, TaskVecEnv(point, tasks, 4), normalizer, point.episode_length, torch.Generator().manual_seed(0), 5
    )
    assert torch.equal(measured.hidden[0], after.hidden[:, None].expand(2, 4, -1))
    with pytest.raises(ValueError, match=r"^algo='rl2' has no MLP policy to hand to SB3: its policy keeps a memory"):
        adaptation.mlp_policy(after, 0, normalizer)
    act = adaptation.policy(after, 1, normalizer)
    assert act(np.zeros(point.obs_dim, np.float32), 0.0).shape == (point.action_dim,)


def test_the_posterior_is_the_prior_times_every_factor_in_any_order():
    g = torch.Generator().manual_seed(0)
    mu, var = torch.randn(7, 3, generator=g), torch.rand(7, 3, generator=g) + 0.2
    mean, std = posterior((1 / var).sum(0), (mu / var).sum(0))
    # the product of N(0, 1) and N(mu_i, var_i), one factor at a time
    m, v = torch.zeros(3), torch.ones(3)
    for i in torch.randperm(7, generator=g):
        v_new = 1 / (1 / v + 1 / var[i])
        m, v = v_new * (m / v + mu[i] / var[i]), v_new
    torch.testing.assert_close(mean, m)
    torch.testing.assert_close(std, v.sqrt())
    fewer = posterior((1 / var[:2]).sum(0), (mu[:2] / var[:2]).sum(0))[1]
    assert torch.all(std < fewer)  # more evidence, more certain
    assert torch.all(kl_to_prior(torch.zeros(3), torch.ones(3)) == 0)


def test_a_context_rollout_pools_a_tasks_worlds_and_draws_a_new_guess_only_at_episode_starts(point):
    module = ContextActorCritic(point.obs_dim, point.action_dim, len(point.params), latent=4, hidden=(16,))
    theta = init_context_params(module, 0)
    normalizer = ObsNormalizer(point.obs_dim + 1, enabled=False)
    env = TaskVecEnv(point, point.sample(0, 2), 3)
    horizon = point.episode_length
    rollout = collect_context(env, module, theta, normalizer, 2 * horizon, torch.Generator().manual_seed(0), 1)
    eps = rollout.noise
    assert torch.equal(eps[0], eps[horizon - 1]) and not torch.equal(eps[horizon - 1], eps[horizon])
    assert torch.equal(rollout.z[0], eps[0])  # the prior at a trial's start: z = 0 + 1 · ε
    # the guess narrows with evidence pooled over the task's worlds: |z - mean| shrinks within the episode
    assert (rollout.z[horizon - 1] - eps[horizon - 1]).abs().sum() > 0
    assert rollout.task.shape == (1, 2, 1, len(point.params))
    adaptation = ContextAdaptation(module)
    state, _ = adaptation.adapt(adaptation.start(theta, 2), rollout)
    assert torch.all(state.precision_sum > 0)
    # with z fixed, the policy is an MLP of the observation alone: what SB3 can hold
    params, observation = adaptation.mlp_policy(state, 1, normalizer)
    obs = np.random.default_rng(0).standard_normal(point.obs_dim).astype(np.float32)
    z_mean = posterior(state.precision_sum[1], state.weighted_sum[1])[0]
    for k, v in theta.items():  # the module's own parameters become θ
        module.get_parameter(k).data.copy_(v)
    with torch.no_grad():
        direct = module(torch.as_tensor(obs), z_mean)[0]
    np.testing.assert_allclose(mean_action(params, observation, obs), direct.numpy(), atol=1e-5)
