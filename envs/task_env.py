"""``TaskEnv``: one task of a family as a ``gymnasium.Env`` (the family's batched hooks with ``B = 1``)."""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
import torch

from envs.family import Family, SimState, Task, TaskBatch
from envs.registry import make_family

OBS_BOUND = 1e6


def make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """An offscreen ``mujoco.Renderer``, made safe for the triton that CUDA builds of torch carry.

    Mesa's software GL (llvmpipe, what EGL and OSMesa use on a machine without a GPU) and triton each load
    their own LLVM; triton loaded after Mesa segfaults (measured with torch 2.14.1 + triton, the first time
    torch._dynamo imports it, e.g. when an optimizer is built). Loaded before Mesa, both work."""
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401

    return mujoco.Renderer(model, height, width)


class TaskEnv(gym.Env):
    """A single task of a family.

    :param family: family name (``grasp``, ``terrain``, ``door``, ``point``, ``cheetah``) or instance.
    :param task: the task's parameters (a dict, or a one-task ``TaskBatch``); ``None`` samples one.
    :param split: split to sample from when ``task`` is ``None``: ``train``, ``val``, ``test`` or ``ood``.
    :param seed: seed of that sample (``None``: a fresh random task).
    :param render_mode: ``None`` or ``"rgb_array"`` (offscreen).
    :param width: rendered image width in pixels.
    :param height: rendered image height in pixels.

    Observations are float32 ``[obs_dim]``; actions are float32 in ``[-1, 1]^action_dim``. ``info`` carries
    ``success`` (this step), ``is_success`` (any step so far: Meta-World's and SB3's convention) and the
    named reward terms under ``reward/<name>``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        family: str | Family,
        task: Task | TaskBatch | None = None,
        split: str = "train",
        seed: int | None = None,
        render_mode: str | None = None,
        width: int = 320,
        height: int = 240,
    ) -> None:
        self.family = make_family(family) if isinstance(family, str) else family
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not allowed: expected None or 'rgb_array'")
        if task is None:
            seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
            task = self.family.sample(seed, 1, split).tasks[0]
        elif isinstance(task, TaskBatch):
            if len(task) != 1:
                raise ValueError(f"task batch has {len(task)} tasks: TaskEnv takes exactly one")
            task = task.tasks[0]
        self.task = self.family.validate(task)
        self.model = self.family.model(self.task)
        self.data = mujoco.MjData(self.model)
        self._task_t = self.family.task_tensors([self.task])
        self._state = SimState.from_mjdata(self.data)
        self.render_mode = render_mode
        self.width, self.height = width, height
        self._renderer: mujoco.Renderer | None = None
        self.metadata = {**self.metadata, "render_fps": round(1 / self.control_dt)}
        # Observations have no natural bound; finite bounds let checkers validate them.
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (self.family.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.family.action_dim,), np.float32)
        self._t = 0
        self._solved = False

    @property
    def control_dt(self) -> float:
        return self.family.frame_skip * float(self.model.opt.timestep)

    def _write(self, fields: dict[str, torch.Tensor]) -> None:
        for name, value in fields.items():
            getattr(self.data, name)[:] = value[0].numpy()

    def _refresh_state(self) -> None:
        # `time` is a scalar in MjData, so it is the one SimState field that is a copy, not a view.
        self._state.time[0] = self.data.time

    def _obs(self) -> np.ndarray:
        return self.family.policy_observation(self._state, self._task_t)[0].numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self._write(self.family.reset(self._task_t, self.np_random))
        mujoco.mj_forward(self.model, self.data)
        self._refresh_state()
        self._t = 0
        self._solved = False
        return self._obs(), {"task": dict(self.task)}

    def step(self, action):
        a = torch.as_tensor(np.asarray(action, dtype=np.float64)).reshape(1, -1)
        self._write(self.family.control(a, self._state, self._task_t))
        mujoco.mj_step(self.model, self.data, nstep=self.family.frame_skip)
        # After mj_step, positions of bodies and sites and the sensors still describe the state before the last
        # substep; mj_step1 brings them up to the new qpos/qvel, as the batched engines do after their steps.
        mujoco.mj_step1(self.model, self.data)
        self._refresh_state()
        self._t += 1
        terms = self.family.reward_terms(self._state, a, self._task_t)
        reward = float(sum(v[0] for v in terms.values()))
        success = bool(self.family.success(self._state, self._task_t)[0])
        self._solved |= success
        unstable = not np.isfinite(self.data.qpos).all() or not np.isfinite(self.data.qvel).all()
        terminated = unstable or bool(self.family.failed(self._state, self._task_t)[0])
        truncated = self._t >= self.family.episode_length
        obs = self._obs()
        if unstable:  # never hand NaN to a learner: end the episode with a zero observation and reward
            obs, reward = np.zeros_like(obs), 0.0
        info = {"success": success, "is_success": self._solved, "unstable": unstable}
        info.update({f"reward/{k}": float(v[0]) for k, v in terms.items()})
        return obs, reward, terminated, truncated, info

    def scripted_action(self) -> np.ndarray:
        """The family's reference controller's action for the current state."""
        return self.family.scripted_action(self._state, self._task_t)[0].numpy().astype(np.float32)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = make_renderer(self.model, self.height, self.width)
        self._renderer.update_scene(self.data, camera=self.family.camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
