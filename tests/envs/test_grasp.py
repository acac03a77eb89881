"""The grasp family's parameters change the physics as documented: mass needs grip, friction holds, each
shape collides as that shape, inactive shape geoms stay out of every contact, and the hooks are batched."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from envs.families.grasp import _EXTENT, _GRIP_KP, SHAPES
from envs.family import SimState
from envs.registry import make_family
from envs.task_env import TaskEnv

BASE = {
    "shape": "box",
    "size": 0.03,
    "mass": 0.1,
    "friction": 0.8,
    "obj_x": 0.05,
    "obj_y": -0.05,
    "obj_yaw": 0.0,
    "target_height": 0.2,
}


@pytest.fixture(scope="module")
def family():
    return make_family("grasp")


def env_for(family, **overrides) -> TaskEnv:
    env = TaskEnv(family, {**BASE, **overrides})
    env.reset(seed=0)
    return env


def lifted(family, **overrides) -> TaskEnv:
    """An env whose scripted controller holds the object still at the target height."""
    env = env_for(family, **overrides)
    for _ in range(family.episode_length):
        *_, info = env.step(env.scripted_action())
        if info["success"]:
            return env
    raise AssertionError(f"scripted controller did not lift {overrides}")


def sag_in_weak_grip(family, pad_force: float, **overrides) -> float:
    """How far (m) a lifted object slides down between the pads in 1 s when each pad presses with
    ``pad_force`` newtons (the coupled fingers split the grip servo's force between the two pads)."""
    env = lifted(family, **overrides)
    m, d = env.model, env.data
    obj, hand = m.body("obj").id, m.body("hand").id
    before = d.xpos[obj, 2] - d.xpos[hand, 2]
    d.ctrl[:3] = 0.0  # hand holds still
    d.ctrl[3] = d.qpos[m.joint("finger_l").qposadr[0]] - 2 * pad_force / _GRIP_KP
    mujoco.mj_step(m, d, nstep=500)
    return before - (d.xpos[obj, 2] - d.xpos[hand, 2])


def drop(env: TaskEnv, height: float, seconds: float, vx: float = 0.0) -> np.ndarray:
    """Release the object upright from ``height`` (its centre) with horizontal speed ``vx``; its final position."""
    m, d = env.model, env.data
    adr = m.joint("obj").qposadr[0]
    d.qpos[adr : adr + 7] = [-0.15, 0.15, height, 1, 0, 0, 0]
    d.qvel[:] = 0.0
    d.qvel[m.joint("obj").dofadr[0]] = vx
    mujoco.mj_step(m, d, nstep=round(seconds / m.opt.timestep))
    return d.xpos[m.body("obj").id].copy()


def test_heavier_object_falls_the_same_when_dropped(family):
    light = drop(env_for(family, mass=0.05), 0.3, 0.15)
    heavy = drop(env_for(family, mass=0.5), 0.3, 0.15)
    assert light[2] < 0.3 - 0.09  # it fell about g·t²/2 = 0.11 m
    np.testing.assert_allclose(light, heavy, atol=1e-9)


def test_weak_grip_holds_the_light_object_while_the_heavy_one_slips(family):
    assert sag_in_weak_grip(family, 2.0, mass=0.1) < 0.002
    assert sag_in_weak_grip(family, 2.0, mass=0.45) > 0.05
    assert sag_in_weak_grip(family, 12.5, mass=0.45) < 0.002  # the full grip holds it


def test_lower_friction_slips_out_of_the_same_grip(family):
    assert sag_in_weak_grip(family, 1.0, friction=0.8) < 0.002
    assert sag_in_weak_grip(family, 1.0, friction=0.3) > 0.05


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_rests_on_the_table_at_its_own_half_height(family, shape):
    size = 0.03
    pos = drop(env_for(family, shape=shape, size=size), 0.12, 0.6)
    assert pos[2] == pytest.approx(_EXTENT[shape][2] * size, abs=0.0015)


def test_a_pushed_sphere_rolls_on_while_a_box_slides_to_a_stop(family):
    start = -0.15
    sphere = drop(env_for(family, shape="sphere"), 0.03, 0.8, vx=0.5)[0] - start
    box = drop(env_for(family, shape="box"), 0.03, 0.8, vx=0.5)[0] - start
    assert box < 0.03 and sphere > 0.2


@pytest.mark.parametrize("shape", SHAPES)
def test_inactive_shape_geoms_never_touch_anything(family, shape):
    env = env_for(family, shape=shape, size=0.02)
    m, d = env.model, env.data
    inactive = {m.geom(f"obj_{s}").id for s in SHAPES if s != shape}
    active = m.geom(f"obj_{shape}").id
    state, task = SimState.from_mjdata(d), family.task_tensors([env.task])
    touched_active = False
    for _ in range(family.episode_length):
        d.ctrl[:] = family.control(family.scripted_action(state, task), state, task)["ctrl"][0].numpy()
        for _ in range(family.frame_skip):  # every physics step, not only every control step
            mujoco.mj_step(m, d)
            pairs = {int(g) for c in d.contact[: d.ncon] for g in c.geom}
            assert not pairs & inactive
            touched_active |= active in pairs
    assert touched_active
    assert (m.geom_rgba[list(inactive), 3] == 0).all() and m.geom_rgba[active, 3] == 1


def test_observation_hides_mass_friction_and_target(family):
    a = env_for(family, mass=0.05, friction=0.5, target_height=0.1).reset(seed=3)[0]
    b = env_for(family, mass=0.5, friction=1.0, target_height=0.25).reset(seed=3)[0]
    np.testing.assert_array_equal(a, b)


def test_scripted_controller_stops_at_each_hidden_target(family):
    for target in (0.12, 0.24):
        env = lifted(family, target_height=target)
        assert env.data.xpos[env.model.body("obj").id, 2] == pytest.approx(target, abs=0.025)


def test_hooks_batch_worlds_in_float32_like_single_worlds_in_float64(family):
    tasks = [{**BASE, "shape": s, "obj_x": x} for s, x in (("box", 0.1), ("sphere", -0.1), ("cylinder", 0.0))]
    envs = [env_for(family, **t) for t in tasks]
    for env in envs:
        for _ in range(30):  # mid-grasp: every reward term is live
            env.step(env.scripted_action())
    states = [SimState.from_mjdata(e.data) for e in envs]
    fields = {f: torch.cat([getattr(s, f) for s in states]).float() for f in SimState.FIELDS}
    state = SimState(**fields, time=torch.zeros(3, dtype=torch.float32))
    task = family.task_tensors(tasks, dtype=torch.float32)
    action = torch.full((3, 4), 0.5, dtype=torch.float32)
    obs, terms = family.observe(state), family.reward_terms(state, action, task)
    script = family.scripted_action(state, task)
    assert obs.dtype == torch.float32 and obs.shape == (3, family.obs_dim)
    for i, one_state in enumerate(states):
        one = family.task_tensors([tasks[i]])
        torch.testing.assert_close(obs[i], family.observe(one_state)[0].float(), atol=1e-5, rtol=1e-5)
        single = family.reward_terms(one_state, action[i : i + 1].double(), one)
        for k, v in terms.items():
            assert v.dtype == torch.float32
            torch.testing.assert_close(v[i], single[k][0].float(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(script[i], family.scripted_action(one_state, one)[0].float(), atol=1e-3, rtol=0)
    reset = family.reset(task, np.random.default_rng(0))
    assert reset["qpos"].shape == (3, family.model0.nq) and reset["qpos"].dtype == torch.float32
