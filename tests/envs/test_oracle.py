"""The oracle family: its policy observation is the base family's followed by the task's scaled parameters, and
everything else (tasks, hooks, the base family itself) is unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import envs
from envs.oracle import OracleFamily
from envs.task_env import TaskEnv
from envs.vec_env import TaskVecEnv
from meta.config import TrainConfig, family_of


@pytest.mark.parametrize("name", list(envs.FAMILIES))
def test_obs_dim_adds_one_entry_per_parameter_and_the_envs_follow_it(name):
    base = envs.make_family(name)
    before = base.obs_dim
    oracle = OracleFamily(base)
    assert oracle.obs_dim == base.obs_dim + len(base.params)
    assert base.obs_dim == before == type(base).obs_dim  # wrapping leaves the base family alone
    env = TaskVecEnv(oracle, oracle.sample(0, 2, "ood"), 2)
    obs = env.reset()
    assert obs.shape == (2, 2, oracle.obs_dim)
    torch.testing.assert_close(obs[..., : base.obs_dim], base.observe(env.sim.state).float().reshape(2, 2, -1))
    assert obs[..., base.obs_dim :].abs().max() <= 1  # train and ood tasks scale into [-1, 1]
    assert TaskEnv(oracle, seed=0).observation_space.shape == (oracle.obs_dim,)


def test_the_observation_differs_between_tasks_exactly_in_the_appended_parameters():
    oracle = OracleFamily(envs.make_family("point"))
    # The goal is the only difference between point tasks, and nothing collides with it: one seed and the same
    # actions give the same motion, so the base observations agree while the parameters differ.
    a = TaskEnv(oracle, {"goal_angle": 0.0, "goal_radius": 0.3})
    b = TaskEnv(oracle, {"goal_angle": 345.0, "goal_radius": 1.5})
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    for action in np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32):
        np.testing.assert_array_equal(obs_a[:4], obs_b[:4])
        # the extremes of the union of train ([0, 270]°, [0.3, 1] m) and ood ([285, 345]°, up to 1.5 m)
        np.testing.assert_allclose(obs_a[4:], [-1.0, -1.0], atol=1e-6)
        np.testing.assert_allclose(obs_b[4:], [1.0, 1.0], atol=1e-6)
        obs_a, *_ = a.step(action)
        obs_b, *_ = b.step(action)


def test_a_categorical_parameter_appends_its_scaled_index():
    base = envs.make_family("door")
    oracle = OracleFamily(base)
    task = {**base.default_task(), "hinge_side": "left", "direction": "push", "latch": "lever"}
    env = TaskEnv(oracle, task)
    obs, _ = env.reset(seed=0)
    appended = dict(zip([p.name for p in base.params], obs[base.obs_dim :], strict=True))
    sides = base.params[0].choices
    assert appended["hinge_side"] == pytest.approx(2 * sides.index("left") / (len(sides) - 1) - 1)
    assert appended["latch"] == pytest.approx(1.0)  # the last category
    assert appended["handle_height"] == pytest.approx(0.0, abs=1e-6)  # the default task is the train centre


def test_every_hook_but_the_policy_observation_is_the_base_familys():
    base = envs.make_family("door")
    oracle = OracleFamily(base)
    batch = base.sample(1, 3, "test")
    assert oracle.sample(1, 3, "test") == batch and oracle.name == base.name
    assert oracle.model(batch.tasks[0]) is base.model(batch.tasks[0])
    env = TaskVecEnv(base, batch, 2, seed=5)
    env.reset()
    state, task = env.sim.state, env.sim.task
    action = torch.rand(6, base.action_dim, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(oracle.observe(state), base.observe(state))
    torch.testing.assert_close(base.policy_observation(state, task), base.observe(state))
    torch.testing.assert_close(oracle.reward_terms(state, action, task), base.reward_terms(state, action, task))
    torch.testing.assert_close(oracle.success(state, task), base.success(state, task))
    torch.testing.assert_close(oracle.failed(state, task), base.failed(state, task))
    torch.testing.assert_close(oracle.control(action, state, task), base.control(action, state, task))
    torch.testing.assert_close(oracle.scripted_action(state, task), base.scripted_action(state, task))


def test_family_of_wraps_only_when_the_config_asks_for_the_task():
    cfg = dataclasses.replace(TrainConfig(), family="point")
    assert family_of(cfg) is envs.make_family("point")
    assert isinstance(family_of(dataclasses.replace(cfg, task_in_obs=True)), OracleFamily)
    with pytest.raises(ValueError, match="task_in_obs='yes' is not allowed: expected true or false"):
        dataclasses.replace(cfg, task_in_obs="yes")
