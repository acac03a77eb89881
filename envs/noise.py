"""Random draws that do not depend on how a batch of worlds is split.

A meta-batch may run whole in one process or split across workers (``meta/distributed.py``). For both to give
the same numbers, what a world draws must depend only on the seed, the moment and the world's index in the
whole batch, never on which other worlds share its process or reset with it. Both generators below draw for
the whole batch and keep the rows asked for: the extra draws cost far less than the physics they feed.
"""

from __future__ import annotations

import numpy as np
import torch


class WorldRandom:
    """The part of ``numpy.random.Generator`` that :meth:`envs.family.Family.reset` hooks use, for some worlds.

    Every draw is made for all ``total`` worlds of the batch, from a generator keyed by ``(seed, event)``; the rows
    ``worlds`` (global world indices, in the order the hook's batch lists them) are returned.
    """

    def __init__(self, seed: int, event: int, worlds: np.ndarray, total: int) -> None:
        self._rng = np.random.default_rng([seed, event])
        self._worlds, self._total = worlds, total

    def _full(self, size: int | tuple[int, ...]) -> tuple[int, ...]:
        size = (size,) if isinstance(size, int) else tuple(size)
        if size[0] != len(self._worlds):
            raise ValueError(f"draw of size {size}: the first axis must be the {len(self._worlds)} worlds reset")
        return (self._total, *size[1:])

    def uniform(self, low: float, high: float, size: int | tuple[int, ...]) -> np.ndarray:
        return self._rng.uniform(low, high, self._full(size))[self._worlds]

    def standard_normal(self, size: int | tuple[int, ...]) -> np.ndarray:
        return self._rng.standard_normal(self._full(size))[self._worlds]


def action_noise(generator: torch.Generator, shape: tuple[int, ...], rows: slice, total: int) -> torch.Tensor:
    """Standard normal noise ``shape`` (leading axis: tasks) for the tasks ``rows`` of a meta-batch of ``total``
    tasks: drawn ``[total, *shape[1:]]`` and sliced, so a shard sees what the whole batch would."""
    return torch.randn((total, *shape[1:]), generator=generator)[rows]
