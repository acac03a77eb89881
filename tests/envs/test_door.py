"""The door family's parameters change the physics as documented: damping, spring, mass, latch, push/pull
and hinge side each do what they claim; the observation hides them and the wanted opening; success and reward
ask for the wanted opening at the episode's end; the scripted controller leaves every kind of door there."""

from __future__ import annotations

import itertools

import mujoco
import numpy as np
import pytest

from envs.registry import make_family
from envs.task_env import TaskEnv

DOOR = make_family("door")
BASE = {
    "hinge_side": "right",
    "direction": "pull",
    "handle_height": 0.5,
    "door_mass": 5.0,
    "damping": 2.0,
    "spring": 0.0,
    "latch": "none",
    "target_angle": 0.5,
}
HINGE = DOOR.model0.joint("door_hinge")
LEVER = DOOR.model0.joint("lever")


def door(**overrides) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """Model and data of ``BASE`` with some parameters changed, at rest (no latch control: plain MuJoCo)."""
    model = DOOR.model({**BASE, **overrides})
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


def opening_after(seconds: float, model: mujoco.MjModel, data: mujoco.MjData) -> float:
    mujoco.mj_step(model, data, nstep=round(seconds / model.opt.timestep))
    return float(data.qpos[HINGE.qposadr[0]])


def test_damped_door_opens_slower_under_the_same_push():
    angles = []
    for damping in (0.5, 4.0):
        model, data = door(damping=damping)
        data.qfrc_applied[HINGE.dofadr[0]] = 1.0  # N·m in the opening direction
        angles.append(opening_after(0.5, model, data))
    assert angles[1] < 0.5 * angles[0]


def test_heavier_door_gains_less_speed_from_the_same_push():
    speeds = []
    for mass in (2.0, 10.0):
        model, data = door(door_mass=mass, damping=0.5)
        data.qfrc_applied[HINGE.dofadr[0]] = 2.0
        opening_after(0.05, model, data)
        speeds.append(float(data.qvel[HINGE.dofadr[0]]))
    assert speeds[1] < 0.4 * speeds[0]


def test_spring_closes_an_opened_door_and_no_spring_leaves_it_open():
    final = {}
    for spring in (0.0, 4.0):
        model, data = door(direction="push", spring=spring, damping=1.0, door_mass=2.0)  # swings clear of the hand
        data.qpos[HINGE.qposadr[0]] = 0.8
        final[spring] = opening_after(3.0, model, data)
    assert final[4.0] < 0.1
    assert final[0.0] > 0.75


def _pushed_env(latch: str) -> TaskEnv:
    env = TaskEnv(DOOR, {**BASE, "latch": latch, "damping": 0.5})
    env.reset(seed=0)
    env.data.qfrc_applied[HINGE.dofadr[0]] = 3.0  # stays applied: MuJoCo never clears qfrc_applied
    return env


def _hold(env: TaskEnv, steps: int) -> np.ndarray:
    """Step with the hand still and the fingers shut; the last observation."""
    for _ in range(steps):
        obs, *_ = env.step(np.array([0.0, 0.0, 0.0, -1.0], dtype=np.float32))
    return obs


def test_latched_door_does_not_open_until_the_lever_is_pressed_down():
    free, latched = _pushed_env("none"), _pushed_env("lever")
    assert _hold(free, 10)[7] > 0.3
    assert _hold(latched, 10)[7] < 0.01
    latched.data.qfrc_applied[LEVER.dofadr[0]] = 0.5  # press the lever down past its unlatch angle
    obs = _hold(latched, 10)
    assert obs[9] > 0.5 and obs[7] > 0.3
    latched.data.qfrc_applied[LEVER.dofadr[0]] = 0.0  # once open, the door stays free with the lever up
    obs = _hold(latched, 10)
    assert obs[9] < 0.1 and obs[7] > 0.5


@pytest.mark.parametrize("side", ["left", "right"])
def test_push_door_cannot_be_pulled_open_and_pull_door_cannot_be_pushed_open(side):
    panel = DOOR.model0.body("panel").id
    for direction, opens_towards in (("pull", -1.0), ("push", 1.0)):
        for towards in (-1.0, 1.0):  # a force on the panel towards the robot (-y) or away from it
            model, data = door(hinge_side=side, direction=direction, damping=0.5)
            data.xfrc_applied[panel, 1] = 20.0 * towards
            angle = opening_after(0.3, model, data)
            if towards == opens_towards:
                assert angle > 0.3, (direction, towards)
            else:
                assert abs(angle) < 0.01, (direction, towards)


def test_hinge_side_mirrors_the_door():
    panel = DOOR.model0.body("panel").id
    handle = DOOR.model0.site("handle").id
    states = {}
    for side in ("left", "right"):
        model, data = door(hinge_side=side, damping=0.5)
        closed = data.site_xpos[handle].copy()
        data.xfrc_applied[panel, 1] = -20.0
        opening_after(0.3, model, data)
        data.qpos[LEVER.qposadr[0]] = 0.5
        mujoco.mj_forward(model, data)
        states[side] = closed, data.xpos[panel].copy(), data.site_xpos[handle].copy()
    mirror = np.array([-1.0, 1.0, 1.0])
    for left, right in zip(states["left"], states["right"], strict=True):
        np.testing.assert_allclose(left, right * mirror, atol=1e-9)
    closed, _, pressed = states["left"]
    assert closed[0] > 0 and pressed[2] < closed[2] - 0.03  # a left door's handle is on the right; pressing lowers it


def test_observation_does_not_reveal_the_task():
    other = {"hinge_side": "left", "direction": "push", "latch": "lever", "handle_height": 0.6, "door_mass": 9.0}
    other["target_angle"] = 0.8
    obs = [TaskEnv(DOOR, t).reset(seed=4)[0] for t in (BASE, {**BASE, **other, "damping": 3.5, "spring": 3.0})]
    np.testing.assert_array_equal(obs[0], obs[1])


@pytest.mark.parametrize(
    "side,direction,latch", list(itertools.product(("left", "right"), ("pull", "push"), ("none", "lever")))
)
def test_scripted_controller_leaves_every_kind_of_door_at_the_wanted_opening(side, direction, latch):
    task = {**BASE, "hinge_side": side, "direction": direction, "latch": latch, "damping": 8.0, "spring": 4.0}
    env = TaskEnv(DOOR, {**task, "door_mass": 10.0, "handle_height": 0.4, "target_angle": 0.7})
    env.reset(seed=0)
    for _ in range(DOOR.episode_length):
        *_, info = env.step(env.scripted_action())
    assert info["is_success"]
    assert abs(env.data.qpos[HINGE.qposadr[0]] - 0.7) < 0.1


def _episode_with_the_door_held_at(angle: float, target: float) -> tuple[list[bool], list[float]]:
    """Success and reward of each step of an episode whose door is pinned at ``angle`` (the hinge's qpos is set
    before every step; the door's damping keeps it from moving much within one)."""
    env = TaskEnv(DOOR, {**BASE, "target_angle": target, "damping": 8.0})
    env.reset(seed=0)
    successes, rewards = [], []
    for _ in range(DOOR.episode_length):
        env.data.qpos[HINGE.qposadr[0]] = angle
        env.data.qvel[HINGE.dofadr[0]] = 0.0
        _, reward, *_, info = env.step(np.zeros(4, dtype=np.float32))
        successes.append(info["is_success"])
        rewards.append(reward)
    return successes, rewards


def test_success_is_the_wanted_opening_at_the_episodes_end_and_not_on_the_way():
    at_target, _ = _episode_with_the_door_held_at(0.6, target=0.6)
    assert at_target[-1] and not any(at_target[:-1])  # judged at the end only: a door swinging past counts for nothing
    assert not any(_episode_with_the_door_held_at(0.3, target=0.6)[0])


def test_reward_is_highest_at_the_wanted_opening_and_falls_off_on_both_sides():
    mean = {angle: np.mean(_episode_with_the_door_held_at(angle, target=0.5)[1]) for angle in (0.2, 0.5, 0.8)}
    assert mean[0.5] > mean[0.2] + 0.5 and mean[0.5] > mean[0.8] + 0.5
