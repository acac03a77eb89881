"""``TaskVecEnv``: batched shapes, same-step auto-reset, per-task statistics, diverging worlds reset without
poisoning the batch, determinism, and the same numbers as the single-task ``TaskEnv``."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

import envs
from envs.family import TaskBatch
from envs.task_env import TaskEnv
from envs.vec_env import TaskVecEnv


def vec(name: str, n: int = 3, e: int = 2, seed: int = 0, **kw) -> TaskVecEnv:
    return TaskVecEnv(name, envs.make_family(name).sample(seed, n, "train"), e, seed=seed, **kw)


def random_actions(env: TaskVecEnv, steps: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(steps, env.n_tasks, env.envs_per_task, env.action_dim, generator=g) * 2 - 1


@pytest.mark.parametrize("name", list(envs.FAMILIES))
def test_step_returns_task_by_env_tensors(name):
    env = vec(name)
    f = env.family
    obs = env.reset()
    assert obs.shape == (3, 2, f.obs_dim) and obs.dtype == torch.float32
    obs, reward, terminated, truncated, info = env.step(random_actions(env, 1)[0])
    assert obs.shape == (3, 2, f.obs_dim) and reward.shape == (3, 2) and reward.dtype == torch.float32
    assert terminated.dtype == truncated.dtype == info["success"].dtype == torch.bool
    assert info["final_obs"].shape == obs.shape
    assert torch.isfinite(obs).all() and torch.isfinite(reward).all()
    terms = sum(v for k, v in info.items() if k.startswith("reward/"))
    torch.testing.assert_close(terms, reward)


def test_each_world_matches_the_single_task_env():
    """TaskVecEnv and TaskEnv share the family's hooks: same state and actions give the same numbers."""
    env = vec("door", n=2, e=2)
    env.reset()
    singles = []
    for w in range(env.num_envs):
        single = TaskEnv(env.family, env.tasks.tasks[w // 2])
        single.reset(seed=0)
        single.data.qpos[:] = env.sim.state.qpos[w].numpy()
        single.data.qvel[:] = env.sim.state.qvel[w].numpy()
        mujoco.mj_forward(single.model, single.data)
        singles.append(single)
    for a in random_actions(env, 40):
        obs, reward, _, _, info = env.step(a)
        flat = a.reshape(env.num_envs, -1)
        for w, single in enumerate(singles):
            o, r, _, _, i = single.step(flat[w].numpy())
            np.testing.assert_allclose(obs.reshape(env.num_envs, -1)[w].numpy(), o, rtol=1e-6, atol=1e-6)
            assert reward.reshape(-1)[w].item() == pytest.approx(r, rel=1e-6, abs=1e-6)
            assert info["success"].reshape(-1)[w].item() == i["success"]


def test_episodes_end_at_their_length_and_reset_in_the_same_step():
    env = vec("point", n=2, e=3)
    f = env.family
    obs = env.reset()
    first = obs.clone()
    for t, a in enumerate(random_actions(env, f.episode_length), start=1):
        obs, _, terminated, truncated, info = env.step(a)
        assert not terminated.any()
        assert truncated.all() == (t == f.episode_length)
    # the returned observation starts the next episode (the puck is back near the start), the final one does not
    assert (obs[..., :2] - first[..., :2]).abs().max() < 0.05
    assert (info["final_obs"][..., :2] - obs[..., :2]).abs().max() > 0.05
    stats = env.episode_stats()
    assert stats["episodes"].tolist() == [3.0, 3.0]
    assert stats["length"].tolist() == [f.episode_length] * 2
    assert env.episode_stats()["episodes"].sum() == 0  # cleared


def test_episode_stats_are_per_task():
    f = envs.make_family("point")
    solvable = {"goal_angle": 0.0, "goal_radius": 0.4}
    env = TaskVecEnv(f, TaskBatch("point", "train", (solvable, solvable)), 4)
    env.reset()
    for _ in range(f.episode_length):
        toward_goal = f.scripted_action(env.sim.state, env.sim.task).reshape(2, 4, 2)
        toward_goal[1] = -toward_goal[1]  # task 1's worlds flee the goal
        env.step(toward_goal.float())
    stats = env.episode_stats()
    assert stats["success"].tolist() == [1.0, 0.0]
    assert stats["return"][0] > stats["return"][1]


def test_a_diverging_world_is_reset_counted_and_leaves_the_others_alone():
    clean, hit = vec("cheetah", seed=1), vec("cheetah", seed=1)
    clean.reset()
    hit.reset()
    flagged = []
    for t, a in enumerate(random_actions(clean, 5)):
        if t == 2:
            hit.sim.state.qvel[4] = float("nan")
        o1, *_ = clean.step(a)
        o2, r2, terminated, _, info = hit.step(a)
        flagged.append(info["unstable"].reshape(-1).nonzero().flatten().tolist())
        if t == 2:
            assert terminated.reshape(-1)[4] and r2.reshape(-1)[4] == 0
    assert flagged == [[], [], [4], [], []]  # flagged in the step it happened, then reset
    assert hit.episode_stats()["unstable"].tolist() == [0.0, 0.0, 1.0]
    keep = torch.arange(6) != 4
    torch.testing.assert_close(o1.reshape(6, -1)[keep], o2.reshape(6, -1)[keep])
    assert torch.isfinite(o2).all()


def test_same_seed_gives_the_same_rollout():
    runs = []
    for _ in range(2):
        env = vec("terrain", n=2, e=2, seed=3)
        obs = [env.reset()]
        for a in random_actions(env, 20):
            obs.append(env.step(a)[0])
        runs.append(torch.stack(obs))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_set_tasks_switches_the_meta_batch():
    env = vec("point", n=2, e=2)
    new = envs.make_family("point").sample(9, 5, "test")
    env.set_tasks(new, 3)
    assert env.reset().shape == (5, 3, 4)
    assert env.sim.task["goal_angle"][3].item() == new.tasks[1]["goal_angle"]


def test_a_wrongly_shaped_action_is_refused():
    env = vec("point")
    env.reset()
    with pytest.raises(ValueError, match=r"action has shape \(6, 2\): expected \(3, 2, 2\)"):
        env.step(torch.zeros(6, 2))
