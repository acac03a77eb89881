"""``agents.linear_baseline``: each task's values are the least-squares fit of its own returns-to-go."""

from __future__ import annotations

import torch

from agents.linear_baseline import linear_values


def _rollout(steps: int = 12, n: int = 3, envs: int = 5, dim: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(steps, n, envs, dim, generator=g)
    rewards = torch.randn(steps, n, envs, generator=g)
    ends = torch.zeros(steps, n, envs, dtype=torch.bool)
    ends[-1] = True
    return obs, rewards, ends


def test_returns_that_are_a_feature_of_the_state_are_fitted_exactly():
    # Undiscounted rewards r_t = o_t[0] - o_{t+1}[0] telescope to a return-to-go of o_t[0] (the last o_T is 0), a
    # linear feature: the fit must reproduce it.
    obs, _, ends = _rollout()
    obs[-1] = 0.0
    rewards = obs[..., 0] - torch.cat([obs[1:, ..., 0], torch.zeros_like(obs[:1, ..., 0])])
    values, next_values = linear_values(obs, rewards, ends, gamma=1.0)
    torch.testing.assert_close(values, obs[..., 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(next_values[:-1], values[1:])
    assert (next_values[-1] == 0).all()  # the episode ended


def test_each_task_is_fitted_on_its_own_data_only():
    obs, rewards, ends = _rollout()
    values, _ = linear_values(obs, rewards, ends, gamma=0.99)
    other = rewards.clone()
    other[:, 1] += 10 * torch.randn_like(other[:, 1])
    changed, _ = linear_values(obs, other, ends, gamma=0.99)
    torch.testing.assert_close(changed[:, [0, 2]], values[:, [0, 2]])
    assert not torch.allclose(changed[:, 1], values[:, 1])


def test_time_restarts_after_an_episode_ends_within_the_rollout():
    # Two back-to-back episodes of 6 steps with identical observations and rewards get identical values.
    obs, rewards, ends = _rollout(steps=6)
    ends2 = torch.cat([ends, ends])
    values, next_values = linear_values(torch.cat([obs, obs]), torch.cat([rewards, rewards]), ends2, gamma=0.9)
    torch.testing.assert_close(values[:6], values[6:], atol=1e-5, rtol=0)
    assert (next_values[5] == 0).all() and (next_values[-1] == 0).all()


def test_steps_that_are_not_valid_stay_out_of_the_fit():
    # A world that ended its episodes early waits: what its observations and rewards say then must not move the fit
    # of the steps it acted in, and without the mask it does.
    obs, rewards, ends = _rollout()
    ends[7] = True  # every world's episode ends at step 7; the steps after it wait
    valid = torch.ones_like(ends)
    valid[8:] = False
    values, _ = linear_values(obs, rewards, ends, gamma=0.99, valid=valid)
    noisy_obs, noisy_rewards = obs.clone(), rewards.clone()
    noisy_obs[8:] += 5 * torch.randn_like(noisy_obs[8:])
    noisy_rewards[8:] += 50
    masked, _ = linear_values(noisy_obs, noisy_rewards, ends, gamma=0.99, valid=valid)
    unmasked, _ = linear_values(noisy_obs, noisy_rewards, ends, gamma=0.99)
    torch.testing.assert_close(masked[:8], values[:8])
    assert not torch.allclose(unmasked[:8], values[:8], atol=1e-3)
