"""``BatchedSim``: the interface both engines (MuJoCo's CPU batch, MuJoCo Warp) offer the vector env.

``B = n_tasks × envs_per_task`` worlds of one family, task-major: world ``w`` runs task ``w // envs_per_task``.
State is exposed as a :class:`~envs.family.SimState` of torch tensors ``[B, ...]`` that are views of the engine's
own arrays wherever the engine allows, so the family's batched hooks read the simulator without copies.
"""

from __future__ import annotations

import abc

import mujoco
import numpy as np
import torch

from envs.family import Family, SimState, TaskBatch, TaskTensors


class BatchedSim(abc.ABC):
    """Many worlds of one family stepping together.

    Lifecycle: :meth:`set_tasks` (allocates ``B`` worlds for a task batch), :meth:`reset` (some or all worlds to the
    family's initial state), then :meth:`step` repeatedly. :attr:`state` stays valid across steps.
    """

    backend: str
    """``"cpu"`` or ``"warp"``."""
    device: torch.device
    """Where :attr:`state` lives."""
    dtype: torch.dtype
    """Float type of the engine: float64 for MuJoCo, float32 for MuJoCo Warp."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.tasks: TaskBatch | None = None
        self.n_tasks = 0
        self.envs_per_task = 0
        self.task: TaskTensors = {}
        """Per-world task parameters ``[B]`` (see :meth:`Family.task_tensors`)."""
        self.state: SimState | None = None

    @property
    def num_worlds(self) -> int:
        return self.n_tasks * self.envs_per_task

    def set_tasks(self, tasks: TaskBatch, envs_per_task: int) -> None:
        """Allocate ``len(tasks) × envs_per_task`` worlds for ``tasks`` (task-major). Worlds need a :meth:`reset`."""
        if tasks.family != self.family.name:
            raise ValueError(f"tasks are {tasks.family} tasks, but this simulator runs {self.family.name}")
        if not isinstance(envs_per_task, int) or isinstance(envs_per_task, bool) or envs_per_task < 1:
            raise ValueError(f"envs_per_task={envs_per_task!r} is not allowed: expected a positive integer")
        self.tasks, self.n_tasks, self.envs_per_task = tasks, len(tasks), envs_per_task
        self.task = self.family.task_tensors(tasks, envs_per_task, dtype=self.dtype, device=self.device)
        self._allocate([self.family.model(t) for t in tasks.tasks])

    @abc.abstractmethod
    def _allocate(self, models: list[mujoco.MjModel]) -> None:
        """Build the engine's worlds: ``models[i]`` is task ``i``'s compiled model (same sizes for all)."""

    @abc.abstractmethod
    def reset(self, world_ids: torch.Tensor, rng: np.random.Generator) -> None:
        """Reset worlds ``world_ids`` (long ``[k]``) to the family's initial state, drawing noise from ``rng``."""

    @abc.abstractmethod
    def step(self, controls: dict[str, torch.Tensor]) -> None:
        """Write ``controls`` (MjData field → ``[B, ...]``, from :meth:`Family.control`) and advance every world by
        ``family.frame_skip`` physics steps; afterwards positions, velocities and sensors describe the new state."""

    @abc.abstractmethod
    def engine_failed(self) -> torch.Tensor:
        """Bool ``[B]``: the engine reported trouble in the world since its last reset (a MuJoCo warning such as
        a diverging state, or an error)."""

    def unstable(self) -> torch.Tensor:
        """Bool ``[B]``: worlds whose state is non-finite or that the engine flagged; they need a reset."""
        s = self.state
        finite = torch.isfinite(s.qpos).all(1) & torch.isfinite(s.qvel).all(1)
        return ~finite | self.engine_failed()

    def _reset_fields(self, world_ids: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The family's initial MjData fields for ``world_ids``, each ``[k, ...]``."""
        sub = {k: v[world_ids] for k, v in self.task.items()}
        return self.family.reset(sub, rng)
