"""Behaviour every family promises: it makes, steps, stays finite and deterministic; its splits are disjoint
and sampling stays inside them; tasks differ only in per-world fields MuJoCo Warp can batch; it passes the
gymnasium and SB3 checkers; its scripted controller reaches its documented success rate."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.family import SPLITS, UNBATCHED_DERIVED, WARP_BATCHABLE
from envs.sim import share_cores_with_physics
from envs.task_env import TaskEnv
from envs.vec_env import scripted_success_rate

FAMILIES = list(envs.FAMILIES)


def rollout(env: TaskEnv, actions: np.ndarray) -> list[np.ndarray]:
    obs = [env.reset(seed=7)[0]]
    for a in actions:
        o, r, terminated, truncated, _ = env.step(a)
        obs.append(o)
        assert np.isfinite(r)
        if terminated or truncated:
            break
    return obs


@pytest.mark.parametrize("name", FAMILIES)
def test_family_makes_resets_steps_and_stays_finite(name):
    env = TaskEnv(name, split="train", seed=0)
    f = env.family
    actions = np.random.default_rng(0).uniform(-1, 1, (60, f.action_dim)).astype(np.float32)
    obs = rollout(env, actions)
    assert len(obs) > 10
    for o in obs:
        assert o.shape == (f.obs_dim,) and o.dtype == np.float32
        assert np.isfinite(o).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_gives_same_task_and_trajectory(name):
    a, b, c = (TaskEnv(name, split="train", seed=s) for s in (3, 3, 4))
    assert a.task == b.task and a.task != c.task
    actions = np.random.default_rng(1).uniform(-1, 1, (30, a.family.action_dim)).astype(np.float32)
    for oa, ob in zip(rollout(a, actions), rollout(b, actions), strict=True):
        np.testing.assert_array_equal(oa, ob)


@pytest.mark.parametrize("name", FAMILIES)
def test_ood_and_train_regions_are_disjoint(name):
    f = envs.make_family(name)
    ood = f.sample(0, 300, "ood").tasks
    train = f.sample(0, 300, "train").tasks
    assert not any(f.in_split(t, "train") for t in ood)
    assert not any(f.in_split(t, "ood") for t in train)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("split", SPLITS)
def test_sampling_never_leaves_its_region(name, split):
    f = envs.make_family(name)
    batch = f.sample(11, 300, split)
    assert len(batch) == 300 and batch.split == split
    assert all(f.in_split(t, split) for t in batch.tasks)
    assert all(f.validate(t) == t for t in batch.tasks)


@pytest.mark.parametrize("name", FAMILIES)
def test_test_split_draws_differ_from_train_draws(name):
    f = envs.make_family(name)
    train, test = f.sample(5, 50, "train").tasks, f.sample(5, 50, "test").tasks
    assert not {tuple(t.items()) for t in train} & {tuple(t.items()) for t in test}


def _model_arrays(model) -> dict[str, np.ndarray]:
    out = {}
    for k in dir(model):
        if k.startswith("_"):
            continue
        v = getattr(model, k)
        if isinstance(v, np.ndarray):
            out[k] = v
    out.update({f"opt.{k}": np.atleast_1d(getattr(model.opt, k)) for k in ("timestep", "gravity", "wind", "density")})
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_tasks_differ_only_in_fields_warp_can_batch(name):
    f = envs.make_family(name)
    assert f.varying_fields <= WARP_BATCHABLE
    ref = _model_arrays(f.model0)
    tasks = f.sample(0, 6, "train").tasks + f.sample(0, 6, "ood").tasks
    changed: set[str] = set()
    for t in tasks:
        arrays = _model_arrays(f.model(t))
        assert arrays.keys() == ref.keys()
        for k, v in arrays.items():
            assert v.shape == ref[k].shape, f"{k} changes size between tasks"
            if not np.array_equal(v, ref[k]):
                changed.add(k)
    undeclared = changed - f.varying_fields - UNBATCHED_DERIVED
    assert not undeclared, f"undeclared per-task fields: {sorted(undeclared)}"


def test_warp_batchable_list_matches_installed_mujoco_warp():
    types = pytest.importorskip("mujoco_warp._src.types")
    warp_util = pytest.importorskip("mujoco_warp._src.warp_util")
    import dataclasses

    def batched(cls, prefix=""):
        return {
            prefix + f.name
            for f in dataclasses.fields(cls)
            if warp_util.is_array_spec(f.type) and getattr(f.type, "shape", ())[:1] == ("*",)
        }

    assert batched(types.Model) | batched(types.Option, "opt.") == WARP_BATCHABLE


@pytest.mark.parametrize("name", FAMILIES)
def test_gymnasium_and_sb3_env_checkers_pass_without_warnings(name):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(envs.gym_id(name), seed=1, render_mode="rgb_array").unwrapped)
        sb3_check_env(gym.make(envs.gym_id(name), seed=1))


@pytest.mark.parametrize("name", FAMILIES)
def test_sb3_ppo_trains_on_the_gymnasium_id(name):
    import torch
    from stable_baselines3 import PPO

    share_cores_with_physics()
    model = PPO("MlpPolicy", gym.make(envs.gym_id(name), seed=2), n_steps=64, batch_size=32, n_epochs=1, seed=0)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(128)
    assert model.num_timesteps == 128
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))


@pytest.mark.parametrize("name", FAMILIES)
def test_scripted_controller_reaches_documented_success_rate(name):
    f = envs.make_family(name)
    if f.scripted_success is None:
        pytest.skip(f"{name} has no scripted controller")
    rate = scripted_success_rate(f, f.sample(0, 20, "train"))
    assert rate >= f.scripted_success, f"scripted success {rate:.2f} < {f.scripted_success}"


@pytest.mark.parametrize("name", FAMILIES)
def test_rgb_array_render_shows_the_scene(name):
    env = TaskEnv(name, seed=0, render_mode="rgb_array", width=160, height=120)
    env.reset(seed=0)
    img = env.render()
    env.close()
    assert img.shape == (120, 160, 3) and img.dtype == np.uint8
    assert img.std() > 5  # not a blank frame


def test_gym_make_takes_a_given_task():
    task = {"goal_angle": 90.0, "goal_radius": 0.5}
    env = gym.make("robometa/Point-v0", task=task)
    assert env.unwrapped.task == task


@pytest.mark.parametrize("split", SPLITS)
def test_gym_make_samples_its_task_from_the_split(split):
    env = gym.make("robometa/Point-v0", split=split, seed=0).unwrapped
    assert env.family.in_split(env.task, split)
    assert env.task == env.family.sample(0, 1, split).tasks[0]
