"""The terrain family's parameters change the simulated world as documented: the quadruped stands on its own,
friction governs whether a gait grips, slopes and stairs raise the ground along the goal direction, the goal
direction turns the track, rough tile heights follow their seed, and the policy never sees the task."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from envs.families.terrain import (
    ROUGH_AMPLITUDE,
    SINK,
    SLOPE_ANGLE,
    STAIR_RISE,
    SUCCESS_RADIUS,
    TILE,
    TRACK_START,
    ice_scale,
)
from envs.family import SimState
from envs.registry import make_family
from envs.task_env import TaskEnv

F = make_family("terrain")
BASE = {
    "terrain_type": "flat",
    "difficulty": 1.0,
    "friction": 1.0,
    "goal_angle": 0.0,
    "goal_distance": 2.5,
    "terrain_seed": 0,
}


def task(**kw) -> dict:
    return F.validate({**BASE, **kw})


def ground(t: dict, x: float, y: float) -> float:
    """Height of the ground (floor or tile) under ``(x, y)`` in the task's model, by a ray from above that
    skips the visual goal markers (group 2) and the robot, which stands at the origin."""
    m = F.model(t)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    geom = np.zeros(1, np.int32)
    dist = mujoco.mj_ray(
        m,
        d,
        np.array([x, y, 5.0]),
        np.array([0, 0, -1.0]),
        np.array([1, 1, 0, 0, 0, 0], np.uint8),
        1,
        m.body("torso").id,
        geom,
    )
    return 5.0 - dist


def trot(step: int, dt: float) -> np.ndarray:
    """An open-loop trot toward +x at 2 Hz: diagonal leg pairs sweep their hips and fold their knees to lift."""
    phase = 2 * math.pi * 2.0 * step * dt + np.array([0, math.pi, math.pi, 0])
    lift = np.clip(-np.sin(phase), 0, 1)
    target = np.zeros(12)
    target[0::3] = np.array([-1, 1, -1, 1]) * 0.5 * -np.cos(phase)
    target[1::3] = 0.3 * lift
    target[2::3] = -0.5 * lift
    return (target / F.model0.actuator_ctrlrange[:, 1]).astype(np.float32)


def test_robot_stands_still_on_flat_ground_with_zero_action():
    env = TaskEnv(F, task())
    env.reset(seed=0)
    for _ in range(75):  # 3 s
        _, _, terminated, _, info = env.step(np.zeros(12, np.float32))
        assert not terminated
    assert 0.27 < env.data.qpos[2] < 0.33
    assert np.linalg.norm(env.data.qpos[:2]) < 0.05
    assert info["reward/upright"] > 0.99
    assert np.abs(env.data.qvel).max() < 0.05


def _trot_on(t: dict, steps: int = 100) -> tuple[float, float]:
    """Forward travel of the torso (m) and horizontal travel of the feet while touching the ground (m)."""
    env = TaskEnv(F, t)
    env.reset(seed=0)
    feet = [env.model.site(f"foot_{leg}").id for leg in ("fl", "fr", "bl", "br")]
    slip, before = 0.0, env.data.site_xpos[feet].copy()
    for i in range(steps):
        env.step(trot(i, env.control_dt))
        now = env.data.site_xpos[feet]
        down = (now[:, 2] < 0.035) & (before[:, 2] < 0.035)
        slip += np.linalg.norm(now[:, :2] - before[:, :2], axis=1)[down].sum()
        before = now.copy()
    return float(env.data.qpos[0]), slip


def test_same_open_loop_trot_walks_on_grippy_ground_but_slips_on_ice():
    walked, grip_slip = _trot_on(task(friction=1.0))
    iced, ice_slip = _trot_on(task(terrain_type="low_friction", friction=1.0, difficulty=1.0))
    assert walked > 0.5  # with the elliptic friction cone this gait covers ~0.66 m on grip, none on ice
    assert iced < 0.3
    assert ice_slip > 2 * grip_slip
    m = F.model(task(terrain_type="low_friction", friction=0.8, difficulty=1.0))
    assert m.geom_friction[m.geom("floor").id, 0] == pytest.approx(0.8 * ice_scale(1.0))
    assert m.geom_friction[m.geom("tile_5_2").id, 0] == pytest.approx(0.8 * ice_scale(1.0))


@pytest.mark.parametrize("d", [0.5, 1.0])
def test_slope_and_stairs_raise_the_ground_along_the_goal_direction(d):
    s = np.array([1.0, 2.0, 3.0])
    flat = [ground(task(difficulty=d), x, 0.1) for x in s]
    slope = [ground(task(terrain_type="slope", difficulty=d), x, 0.1) for x in s]
    stairs = [ground(task(terrain_type="stairs", difficulty=d), x, 0.1) for x in s]
    np.testing.assert_allclose(flat, 0.0, atol=1e-9)
    np.testing.assert_allclose(slope, (s - TRACK_START) * math.tan(math.radians(SLOPE_ANGLE * d)), atol=1e-3)
    np.testing.assert_allclose(stairs, STAIR_RISE * d * (np.floor((s - TRACK_START) / TILE) + 1) - SINK, atol=1e-6)


def test_robot_dropped_on_the_slope_stands_higher_than_on_flat_ground():
    feet = {}
    for kind in ("flat", "slope"):
        env = TaskEnv(F, task(terrain_type=kind))
        env.reset(seed=0)
        env.data.qpos[0] = 2.0
        env.data.qpos[2] = ground(env.task, 2.0, 0.0) + 0.35
        for _ in range(25):
            env.step(np.zeros(12, np.float32))
        feet[kind] = env.data.site_xpos[1:, 2].mean()
    rise = (2.0 - TRACK_START) * math.tan(math.radians(SLOPE_ANGLE))
    assert feet["slope"] - feet["flat"] == pytest.approx(rise, abs=0.08)


def test_goal_angle_rotates_the_track():
    up_y = task(terrain_type="stairs", goal_angle=90.0)
    assert ground(up_y, 0.1, 2.0) > 0.3
    assert ground(up_y, 2.0, 0.1) == pytest.approx(0.0)
    diagonal = task(terrain_type="stairs", goal_angle=-135.0)
    assert ground(diagonal, -1.5, -1.5) > 0.3
    assert ground(diagonal, 1.5, 1.5) == pytest.approx(0.0)


def test_rough_tile_heights_follow_the_seed_and_scale_with_difficulty():
    xs = TRACK_START + TILE * (np.arange(0, 14, 3) + 0.5)
    ys = TILE * (np.arange(6) - 2.5)

    def heights(**kw) -> np.ndarray:
        t = task(terrain_type="rough", **kw)
        return np.array([[ground(t, x, y) for y in ys] for x in xs]) + SINK

    a, again, other = heights(terrain_seed=1), heights(terrain_seed=1), heights(terrain_seed=2)
    np.testing.assert_array_equal(a, again)
    assert np.abs(a - other).max() > 0.02
    assert a.min() >= 0 and a.max() <= ROUGH_AMPLITUDE and a.std() > 0.01
    half = heights(terrain_seed=1, difficulty=0.5)
    above_floor = a > 2 * SINK + 1e-3  # tiles whose top stays above the floor at half the difficulty
    np.testing.assert_allclose(half[above_floor], 0.5 * a[above_floor], atol=1e-9)


def test_observation_is_the_same_for_every_task():
    tasks = [
        task(),
        task(terrain_type="low_friction", friction=0.6, goal_angle=-160.0, goal_distance=1.0),
        task(terrain_type="slope", difficulty=0.3, goal_angle=-60.0, terrain_seed=9),
    ]
    first = [TaskEnv(F, t).reset(seed=5)[0] for t in tasks]
    for o in first[1:]:
        np.testing.assert_array_equal(o, first[0])


def test_observation_ends_with_the_torso_position_and_heading():
    m = F.model0
    d = mujoco.MjData(m)
    d.qpos[:] = m.qpos0
    d.qpos[:2] = (1.5, -0.7)
    yaw = math.radians(30.0)
    d.qpos[3:7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
    mujoco.mj_forward(m, d)
    obs = F.observe(SimState.from_mjdata(d))
    assert obs.shape == (1, F.obs_dim)
    np.testing.assert_allclose(obs[0, -4:].numpy(), [1.5, -0.7, math.cos(yaw), math.sin(yaw)], atol=1e-9)


def test_progress_rewards_velocity_toward_the_goal_and_success_needs_the_radius():
    tt = F.task_tensors([task(goal_angle=90.0, goal_distance=2.0)])
    m = F.model0
    d = mujoco.MjData(m)
    d.qpos[:] = m.qpos0
    d.qpos[1] = 2.0 - (SUCCESS_RADIUS - 0.05)
    d.qvel[1] = 0.5  # toward the goal at (0, 2)
    mujoco.mj_forward(m, d)
    state = SimState.from_mjdata(d)
    terms = F.reward_terms(state, torch.zeros(1, 12, dtype=torch.float64), tt)
    assert terms["progress"].item() == pytest.approx(0.5)
    assert terms["goal"].item() == 1.0 and F.success(state, tt).item()
    d.qpos[1] = 2.0 - (SUCCESS_RADIUS + 0.05)
    d.qvel[1] = -0.5
    mujoco.mj_forward(m, d)
    assert F.reward_terms(state, torch.zeros(1, 12, dtype=torch.float64), tt)["progress"].item() == pytest.approx(-0.5)
    assert not F.success(state, tt).item()


def test_episode_fails_when_the_robot_flips():
    tt = F.task_tensors([task()])
    m = F.model0
    d = mujoco.MjData(m)
    d.qpos[:] = m.qpos0
    mujoco.mj_forward(m, d)
    state = SimState.from_mjdata(d)
    assert not F.failed(state, tt).item()
    d.qpos[3:7] = [0, 1, 0, 0]  # upside down
    mujoco.mj_forward(m, d)
    assert F.failed(state, tt).item()
