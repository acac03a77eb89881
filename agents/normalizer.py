"""Running observation normalization: part of the meta-learned state, saved with the checkpoint."""

from __future__ import annotations

import torch


class ObsNormalizer:
    """Mean and variance of every observation seen so far (Chan et al.'s parallel update), applied as
    ``clip((obs - mean) / sqrt(var + 1e-8), -10, 10)``. Disabled, it passes observations through."""

    def __init__(self, obs_dim: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.mean = torch.zeros(obs_dim, dtype=torch.float64)
        self.var = torch.ones(obs_dim, dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.float64)

    def update(self, obs: torch.Tensor) -> None:
        """Fold in observations ``[..., obs_dim]``."""
        self.merge(*moments(obs))

    def merge(self, n: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Fold in the :func:`moments` of a batch seen elsewhere (another worker's observations)."""
        if not self.enabled:
            return
        total = self.count + n
        delta = mean - self.mean
        self.var = (self.var * self.count + var * n + delta.square() * self.count * n / total) / total
        self.mean = self.mean + delta * n / total
        self.count = total

    def __call__(self, obs: torch.Tensor, columns: slice = slice(None)) -> torch.Tensor:
        """Normalized observations, same shape and dtype as ``obs [..., obs_dim]``; with ``columns``, ``obs`` holds
        only those of the tracked columns (a learner that tracks observation and reward together normalizes each
        apart)."""
        if not self.enabled:
            return obs
        mean, std = self.mean[columns].to(obs), torch.sqrt(self.var[columns] + 1e-8).to(obs)
        return ((obs - mean) / std).clamp(-10.0, 10.0)

    def state_dict(self) -> dict[str, torch.Tensor | bool]:
        return {"enabled": self.enabled, "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.enabled = bool(state["enabled"])
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def moments(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count ``[]``, mean ``[obs_dim]`` and variance ``[obs_dim]`` (float64) of observations ``[..., obs_dim]``."""
    x = obs.reshape(-1, obs.shape[-1]).to(torch.float64).cpu()
    return torch.tensor(float(x.shape[0]), dtype=torch.float64), x.mean(0), x.var(0, unbiased=False)
