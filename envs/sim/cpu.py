"""``CpuSim``: the worlds of a task batch in MuJoCo's threaded CPU batch (``mujoco.batch.Batch``).

Each world runs on its own task's compiled model (``Batch.set_models``), so every constant MuJoCo derives from
a task's parameters is exactly what a plain ``mj_step`` loop on that model would use: world ``w`` of the batch
equals ``mj_step`` on ``family.model(task)`` bit for bit.
"""

from __future__ import annotations

import os
import warnings

import mujoco
import numpy as np
import torch
from mujoco import batch

from envs.family import Family, SimState
from envs.sim.base import BatchedSim


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _view(array: np.ndarray) -> torch.Tensor:
    """A torch view of a batch-bound array. Output fields are read-only to numpy; torch warns about that, but
    the view is only ever read, so the warning says nothing here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


class CpuSim(BatchedSim):
    """:class:`BatchedSim` on ``mujoco.batch.Batch``.

    :param family: the family whose tasks run here.
    :param nthread: threads of MuJoCo's pool (default: the cores available to this process).
    """

    backend = "cpu"
    device = torch.device("cpu")
    dtype = torch.float64

    def __init__(self, family: Family, nthread: int | None = None) -> None:
        super().__init__(family)
        self.nthread = available_cores() if nthread is None else nthread
        if not isinstance(self.nthread, int) or self.nthread < 1:
            raise ValueError(f"nthread={nthread!r} is not allowed: expected a positive integer")
        self._batch: batch.Batch | None = None

    def _allocate(self, models: list[mujoco.MjModel]) -> None:
        n = self.num_worlds
        b = batch.Batch(self.family.model0, nsim=n, nthread=self.nthread)
        if self.family.varying_fields:
            b.set_models([models[w // self.envs_per_task] for w in range(n)])
        self._batch = b
        self._writable = {name: _view(b.bind(name)) for name in ("qpos", "qvel", "ctrl", "time", "eq_active")}
        w = self._writable
        self.state = SimState(
            qpos=w["qpos"],
            qvel=w["qvel"],
            ctrl=w["ctrl"],
            time=w["time"],
            **{name: _view(b.bind(name)) for name in ("xpos", "xquat", "site_xpos", "sensordata")},
        )
        self._warnings_at_reset = np.zeros(n, dtype=np.int64)
        self._errors = np.zeros(n, dtype=bool)

    def _warning_counts(self) -> np.ndarray:
        return self._batch.warning[:, :, 1].sum(axis=1)

    def reset(self, world_ids: torch.Tensor, rng: np.random.Generator) -> None:
        ids = world_ids.cpu().numpy()
        if ids.size == 0:
            return
        b = self._batch
        b.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
        for name, value in self._reset_fields(world_ids, rng).items():
            self._writable[name][world_ids] = value.to(self.dtype)
        b.forward(ids)
        self._warnings_at_reset[ids] = self._warning_counts()[ids]
        self._errors[ids] = False

    def step(self, controls: dict[str, torch.Tensor]) -> None:
        for name, value in controls.items():
            self._writable[name].copy_(value)
        try:
            self._batch.step(nstep=self.family.frame_skip, stage=mujoco.mjtStage.mjSTAGE_VEL)
        except batch.SimulationError as e:  # those worlds kept their old state; the vec env resets them
            self._errors[np.asarray(e.ids)] = True

    def engine_failed(self) -> torch.Tensor:
        return torch.from_numpy((self._warning_counts() > self._warnings_at_reset) | self._errors)
