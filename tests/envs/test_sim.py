"""The batched simulators: the CPU engine equals a plain ``mj_step`` loop exactly; MuJoCo Warp (on its CPU device)
matches it within float32 tolerance; worlds are task-major; bad backends and devices are refused."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

import envs
from envs.family import TaskBatch
from envs.sim import SimSettings, make_sim
from envs.sim.cpu import available_cores
from envs.vec_env import TaskVecEnv

FAMILIES = list(envs.FAMILIES)
E = 2  # envs per task


def mixed_tasks(name: str) -> TaskBatch:
    f = envs.make_family(name)
    return TaskBatch(name, "train", f.sample(0, 3, "train").tasks + f.sample(0, 2, "ood").tasks)


def started(name: str, backend: str, tasks: TaskBatch):
    sim = make_sim(envs.make_family(name), SimSettings(backend))
    sim.set_tasks(tasks, E)
    sim.reset(torch.arange(sim.num_worlds), np.random.default_rng(0))
    return sim


@pytest.mark.parametrize("name", FAMILIES)
def test_cpu_sim_equals_a_plain_mj_step_loop_exactly(name):
    f, tasks = envs.make_family(name), mixed_tasks(name)
    sim = started(name, "cpu", tasks)
    refs = []
    for w in range(sim.num_worlds):
        m = f.model(tasks.tasks[w // E])
        d = mujoco.MjData(m)
        d.qpos[:], d.qvel[:] = sim.state.qpos[w].numpy(), sim.state.qvel[w].numpy()
        mujoco.mj_forward(m, d)
        refs.append((m, d))
    rng = np.random.default_rng(1)
    for _ in range(100):
        controls = f.control(torch.as_tensor(rng.uniform(-1, 1, (sim.num_worlds, f.action_dim))), sim.state, sim.task)
        sim.step(controls)
        for w, (m, d) in enumerate(refs):
            for k, v in controls.items():
                getattr(d, k)[:] = v[w].numpy()
            mujoco.mj_step(m, d, nstep=f.frame_skip)
            mujoco.mj_step1(m, d)
            for field in ("qpos", "qvel", "xpos", "site_xpos", "sensordata"):
                np.testing.assert_array_equal(getattr(sim.state, field)[w].numpy(), getattr(d, field), err_msg=field)
    assert not sim.unstable().any()


@pytest.mark.parametrize("name", FAMILIES)
def test_warp_matches_cpu_within_float32_tolerance_every_step_of_100(name):
    """Both engines start every control step from the CPU engine's state (contact dynamics amplify float32
    rounding chaotically, so free-running trajectories part; per-step agreement is what the engines promise).
    Stated tolerance: |Δqpos| ≤ 1e-3 in every world-step, median ≤ 1e-5 (measured: max ≤ 3e-4, median ≤ 2e-7)."""
    pytest.importorskip("mujoco_warp")
    f, tasks = envs.make_family(name), mixed_tasks(name)
    cpu, warp = started(name, "cpu", tasks), started(name, "warp", tasks)
    rng = np.random.default_rng(1)
    errors = []
    for _ in range(100):
        warp.state.qpos.copy_(cpu.state.qpos)
        warp.state.qvel.copy_(cpu.state.qvel)
        a = torch.as_tensor(rng.uniform(-1, 1, (cpu.num_worlds, f.action_dim)))
        cpu.step(f.control(a, cpu.state, cpu.task))
        warp.step(f.control(a.float(), warp.state, warp.task))
        errors.append((cpu.state.qpos - warp.state.qpos.double()).abs().amax(1))
    errors = torch.stack(errors)
    assert errors.max() <= 1e-3 and errors.median() <= 1e-5
    assert not warp.unstable().any()


def test_warp_places_static_geoms_of_each_world_where_its_task_puts_them():
    """Warp computes world-fixed geoms' poses once from one MjData; terrain tiles differ per task."""
    pytest.importorskip("mujoco_warp")
    f, tasks = envs.make_family("terrain"), mixed_tasks("terrain")
    warp = started("terrain", "warp", tasks)
    static = f.model0.body_weldid[f.model0.geom_bodyid] == 0
    assert static.sum() > 80  # the floor and the track's tiles
    for w in range(warp.num_worlds):
        m = f.model(tasks.tasks[w // E])
        d = mujoco.MjData(m)
        mujoco.mj_kinematics(m, d)
        np.testing.assert_allclose(warp._d.geom_xpos.numpy()[w][static], d.geom_xpos[static], atol=1e-5)


def test_worlds_are_task_major():
    f = envs.make_family("point")
    tasks = f.sample(0, 3, "train")
    sim = make_sim(f)
    sim.set_tasks(tasks, 4)
    goal = f.model0.geom("goal").id
    for w in range(12):
        assert sim.task["goal_angle"][w] == tasks.tasks[w // 4]["goal_angle"]
        np.testing.assert_array_equal(
            sim._batch.get_model(w).geom_pos[goal], f.model(tasks.tasks[w // 4]).geom_pos[goal]
        )


def test_a_diverging_world_is_flagged_and_others_are_not():
    sim = started("cheetah", "cpu", mixed_tasks("cheetah"))
    sim.state.qvel[3] = float("nan")
    sim.step({"ctrl": torch.zeros(sim.num_worlds, 6, dtype=torch.float64)})
    assert sim.unstable().tolist() == [w == 3 for w in range(sim.num_worlds)]
    sim.reset(torch.tensor([3]), np.random.default_rng(0))
    assert not sim.unstable().any()


@pytest.mark.parametrize(
    ("backend", "device", "message"),
    [
        ("gpu", "cpu", "backend='gpu' is not allowed: expected one of cpu, warp"),
        ("cpu", "tpu", "device='tpu' is not allowed: expected one of cpu, cuda"),
        ("cpu", "cuda", "device='cuda' is not allowed with backend='cpu'"),
    ],
)
def test_sim_settings_refuse_unknown_backends_and_devices(backend, device, message):
    with pytest.raises(ValueError) as e:
        SimSettings(backend, device)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("nthread", [0, -1, 1.5, True, "2"])
def test_sim_settings_refuse_a_thread_count_that_is_not_a_positive_integer(nthread):
    with pytest.raises(ValueError) as e:
        SimSettings(nthread=nthread)
    assert str(e.value).startswith(f"nthread={nthread!r} is not allowed: expected a positive integer")


def test_sim_settings_reach_the_engine():
    sim = make_sim(envs.make_family("point"), SimSettings("cpu", "cpu", nthread=1))
    assert sim.backend == "cpu" and sim.nthread == 1
    assert make_sim(envs.make_family("point")).nthread == available_cores()
    env = TaskVecEnv("point", envs.make_family("point").sample(0, 2), 2, SimSettings(nthread=1), seed=3)
    assert env.sim.nthread == 1 and env._seed == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_an_error_not_a_cpu_run():
    pytest.importorskip("mujoco_warp")
    with pytest.raises(ValueError, match="device='cuda' is not available here"):
        make_sim(envs.make_family("point"), SimSettings("warp", "cuda"))


def test_tasks_of_another_family_are_refused():
    sim = make_sim(envs.make_family("point"))
    with pytest.raises(ValueError, match="tasks are cheetah tasks, but this simulator runs point"):
        sim.set_tasks(envs.make_family("cheetah").sample(0, 2), 2)
    with pytest.raises(ValueError, match="envs_per_task=0 is not allowed"):
        sim.set_tasks(envs.make_family("point").sample(0, 2), 0)
