"""Batched simulators: many worlds of one family stepping together, on the CPU or on a GPU.

``make_sim(family, backend, device)`` is the one way in; see :class:`envs.sim.base.BatchedSim`.
"""

from __future__ import annotations

from envs.family import Family
from envs.sim.base import BatchedSim

BACKENDS = ("cpu", "warp")
DEVICES = ("cpu", "cuda")


def make_sim(family: Family, backend: str = "cpu", device: str = "cpu", nthread: int | None = None) -> BatchedSim:
    """A batched simulator for ``family``.

    :param backend: ``"cpu"`` (MuJoCo's threaded CPU batch) or ``"warp"`` (MuJoCo Warp).
    :param device: ``"cpu"`` or ``"cuda"``; the ``cpu`` backend runs only on the CPU, ``warp`` on either.
    :param nthread: threads of the ``cpu`` backend (default: the cores available).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not allowed: expected one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not allowed: expected one of {', '.join(DEVICES)}")
    if backend == "cpu":
        if device != "cpu":
            raise ValueError("device='cuda' is not allowed with backend='cpu': use backend='warp' for a GPU")
        from envs.sim.cpu import CpuSim

        return CpuSim(family, nthread=nthread)
    from envs.sim.warp import WarpSim

    return WarpSim(family, device=device)


__all__ = ["BACKENDS", "DEVICES", "BatchedSim", "make_sim"]
