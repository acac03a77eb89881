"""Batched simulators: many worlds of one family stepping together, on the CPU or on a GPU.

``make_sim(family, SimSettings(backend, device, nthread))`` is the one way in; see :class:`envs.sim.base.BatchedSim`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.family import Family
from envs.sim.base import BatchedSim

BACKENDS = ("cpu", "warp")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class SimSettings:
    """Which engine steps the worlds, where, and with how many threads: one value that configs, the vector env and
    the benchmarks pass along unchanged, checked once here (one-line ``ValueError`` naming the field).

    :param backend: ``"cpu"`` (MuJoCo's threaded CPU batch) or ``"warp"`` (MuJoCo Warp).
    :param device: ``"cpu"`` or ``"cuda"``; the ``cpu`` backend runs only on the CPU, ``warp`` on either.
    :param nthread: threads of the ``cpu`` backend (default ``None``: the cores available to this process).
    """

    backend: str = "cpu"  # cpu (MuJoCo batch) or warp (MuJoCo Warp)
    device: str = "cpu"  # cpu or cuda (cuda needs backend warp)
    nthread: int | None = None  # threads of the cpu backend (default: the cores available)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not allowed: expected one of {', '.join(BACKENDS)}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} is not allowed: expected one of {', '.join(DEVICES)}")
        if self.backend == "cpu" and self.device != "cpu":
            raise ValueError("device='cuda' is not allowed with backend='cpu': use backend='warp' for a GPU")
        n = self.nthread
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"nthread={n!r} is not allowed: expected a positive integer or None (the cores available)")


def make_sim(family: Family, sim: SimSettings = SimSettings()) -> BatchedSim:
    """A batched simulator for ``family`` on the engine, device and threads ``sim`` names (worlds are allocated by
    :meth:`BatchedSim.set_tasks`)."""
    if not isinstance(sim, SimSettings):
        raise TypeError(f"sim must be a SimSettings, not {type(sim).__name__}")
    if sim.backend == "cpu":
        from envs.sim.cpu import CpuSim

        return CpuSim(family, nthread=sim.nthread)
    from envs.sim.warp import WarpSim

    return WarpSim(family, device=sim.device)


def share_cores_with_physics() -> None:
    """torch on one thread, for a process whose torch work shares the cores with MuJoCo's thread pool.

    torch's default intra-op threads (one per core) spin-wait between operations and starve the simulator's threads
    of the cores they step worlds on: measured on 2 cores, HalfCheetah ``B = 256`` on the ``cpu`` backend ran 18k
    env steps/s with torch's 2 threads against 26k with 1. The small networks of a rollout gain nothing from more.
    """
    torch.set_num_threads(1)


__all__ = ["BACKENDS", "DEVICES", "BatchedSim", "SimSettings", "make_sim", "share_cores_with_physics"]
