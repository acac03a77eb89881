"""``WarpSim``: the worlds of a task batch in MuJoCo Warp, on a CUDA GPU or on Warp's CPU device.

The model is put on the device once with a per-world batch of exactly the fields the family varies
(``Family.varying_fields``), copied from each task's compiled C model, so the constants MuJoCo derives from a
task's parameters (subtree masses, inverse weights, bounding boxes) come along. State is exposed as zero-copy
``wp.to_torch`` views (float32).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mujoco
import numpy as np
import torch

from envs.family import Family, SimState
from envs.sim.base import BatchedSim

CACHE_DIR = Path(__file__).resolve().parents[2] / ".warp_cache"
"""Warp's compiled kernels, kept in the project (``WARP_CACHE_PATH`` overrides): a cold compile takes ~10–40 s
per family on a CPU, a warm load under a second."""


@functools.cache  # once per process: setting the cache folder again after Warp started would point it elsewhere
def _import_warp():
    try:
        import warp
    except ImportError:
        raise ValueError("backend='warp' needs MuJoCo Warp: pip install -e '.[gpu]' (mujoco-warp, warp-lang)") from None
    # Configuration takes effect only before Warp's runtime starts, and importing mujoco_warp starts it.
    warp.config.kernel_cache_dir = os.environ.get("WARP_CACHE_PATH", str(CACHE_DIR))
    warp.config.log_level = warp.LOG_WARNING  # no start-up banner or per-module compile lines
    with _without_stderr_lines(NO_CUDA_DRIVER):
        import mujoco_warp

        warp.init()
    return warp, mujoco_warp


NO_CUDA_DRIVER = b"Warp CUDA warning: Could not find or load the NVIDIA CUDA driver"
"""What Warp's native runtime prints on every start on a machine without a GPU, even for the CPU device. A run that
asks for ``cuda`` there is refused in one line of our own (:func:`warp_device`); on the CPU it is noise."""


@contextlib.contextmanager
def _without_stderr_lines(prefix: bytes) -> Iterator[None]:
    """Run the block with the process's stderr (file descriptor 2, which native code writes to) captured, then pass
    on every captured line except those starting with ``prefix``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not line.startswith(prefix)]
            if kept:
                os.write(2, b"".join(kept))


def warp_device(device: str) -> str:
    """Check that Warp can run on ``device`` (``"cpu"`` or ``"cuda"``) and return Warp's name for it."""
    wp, _ = _import_warp()
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if wp.get_cuda_device_count() == 0 or not torch.cuda.is_available():
            raise ValueError("device='cuda' is not available here: no CUDA GPU is visible to Warp and torch")
        return "cuda:0"
    raise ValueError(f"device={device!r} is not allowed: expected 'cpu' or 'cuda'")


def _geom_poses(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """World positions ``[ngeom, 3]`` and orientation matrices ``[ngeom, 9]`` of every geom at ``qpos0``."""
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    return data.geom_xpos.copy(), data.geom_xmat.copy()


class WarpSim(BatchedSim):
    """:class:`BatchedSim` on MuJoCo Warp.

    :param family: the family whose tasks run here.
    :param device: ``"cuda"`` (a GPU) or ``"cpu"`` (Warp's CPU device: single-threaded, for parity tests).
    """

    backend = "warp"
    dtype = torch.float32

    def __init__(self, family: Family, device: str = "cuda") -> None:
        super().__init__(family)
        self._wp, self._mjw = _import_warp()
        self._wp_device = warp_device(device)
        self.device = torch.device(self._wp_device)

    def _allocate(self, models: list[mujoco.MjModel]) -> None:
        wp, mjw, n = self._wp, self._mjw, self.num_worlds
        m0 = self.family.model0
        task_of_world = np.arange(n) // self.envs_per_task
        with wp.ScopedDevice(self._wp_device):
            # One row per world (not per task): Warp reads row w % rows, which task-major worlds would alias.
            self._m = mjw.put_model(m0, batch_sizes=dict.fromkeys(self.family.varying_fields, n))
            for name in self.family.varying_fields:
                target = getattr(self._m, name)
                values = np.stack([getattr(models[t], name) for t in task_of_world])
                target.assign(values.reshape(target.numpy().shape).astype(target.numpy().dtype))
            self._d = mjw.put_data(
                m0, mujoco.MjData(m0), nworld=n, nconmax=self.family.max_contacts, njmax=self.family.max_constraints
            )
            # Warp computes the poses of geoms fixed to the world once, here, from the one MjData it is given, and
            # never again: a family that places static geoms per task (terrain tiles) would collide with the
            # default task's. So each world gets its own task's static poses.
            xpos, xmat = zip(*(_geom_poses(model) for model in models), strict=True)
            self._d.geom_xpos.assign(np.stack(xpos)[task_of_world].astype(np.float32))
            self._d.geom_xmat.assign(np.stack(xmat)[task_of_world].reshape(n, m0.ngeom, 3, 3).astype(np.float32))
        d = self._d
        view = wp.to_torch
        self.state = SimState(
            qpos=view(d.qpos),
            qvel=view(d.qvel),
            xpos=view(d.xpos),
            xquat=view(d.xquat),
            site_xpos=view(d.site_xpos),
            sensordata=view(d.sensordata),
            ctrl=view(d.ctrl),
            time=view(d.time),
        )
        self._writable = {
            "qpos": self.state.qpos,
            "qvel": self.state.qvel,
            "ctrl": self.state.ctrl,
            "eq_active": view(d.eq_active),
        }
        self._overflow = view(d.overflow)

    def reset(self, world_ids: torch.Tensor, rng: np.random.Generator) -> None:
        if world_ids.numel() == 0:
            return
        wp, mjw = self._wp, self._mjw
        mask = torch.zeros(self.num_worlds, dtype=torch.bool, device=self.device)
        mask[world_ids.to(self.device)] = True
        mjw.reset_data(self._m, self._d, reset=wp.from_torch(mask))
        ids = world_ids.to(self.device)
        for name, value in self._reset_fields(world_ids, rng).items():
            self._writable[name][ids] = value.to(self.device, self._writable[name].dtype)
        self._overflow[ids] = 0
        mjw.forward(self._m, self._d)  # all worlds: Warp kernels run over every world; the others are unchanged

    def step(self, controls: dict[str, torch.Tensor]) -> None:
        for name, value in controls.items():
            dst = self._writable[name]
            dst.copy_(value.to(dst.dtype))
        for _ in range(self.family.frame_skip):
            self._mjw.step(self._m, self._d)
        self._mjw.step1(self._m, self._d)  # positions and sensors of the new state, as the CPU engine's stage

    def engine_failed(self) -> torch.Tensor:
        return self._overflow != 0
