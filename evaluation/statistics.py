"""Aggregate statistics of evaluation results: mean and interquartile mean (IQM, Agarwal et al. 2021) with
percentile-bootstrap confidence intervals, plain (:func:`bootstrap_ci`) or stratified by run
(:func:`stratified_bootstrap_ci`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the middle half of ``x`` along ``axis`` (the lowest and highest 25 % of values dropped)."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    cut = n // 4
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def bootstrap_ci(
    x: np.ndarray, stat: Callable[..., np.ndarray], level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``stat`` of the samples ``x [n]`` (resampled with replacement)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    resamples = x[np.random.default_rng(seed).integers(0, x.size, (n_boot, x.size))]
    values = stat(resamples, axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def stratified_bootstrap_ci(
    groups: list[np.ndarray],
    stat: Callable[..., np.ndarray],
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``stat`` of the pooled samples of ``groups`` (each ``[n_g]``), each group
    resampled with replacement within itself: a resample keeps every group's size, so the spread between groups
    (between runs, each measured on its own draw of tasks) is part of the estimate, not of its noise.

    The groups are the strata: for the results matrix, one group per run (a cell and its evaluation seed), holding
    that run's per-task scores. rliable's ``StratifiedBootstrap`` (Agarwal et al. 2021) is not used: it resamples the
    runs within each column of a ``[runs, tasks]`` score matrix, so its strata are tasks shared by every run (a fixed
    benchmark suite), whereas here every run is measured on tasks of its own; and it would pull arch, pandas, scipy
    and seaborn into the environment. With one group this is :func:`bootstrap_ci` (the same resamples for the same
    ``seed``)."""
    groups = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    if not groups or any(g.size == 0 for g in groups):
        raise ValueError("stratified_bootstrap_ci needs one or more groups of at least one sample each")
    rng = np.random.default_rng(seed)
    resamples = np.concatenate([g[rng.integers(0, g.size, (n_boot, g.size))] for g in groups], axis=1)
    values = stat(resamples, axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def summarize(x: np.ndarray, seed: int = 0) -> dict[str, float]:
    """``mean``, ``iqm`` and their 95 % bootstrap intervals of the samples ``x [n]``."""
    x = np.asarray(x, dtype=np.float64).ravel()
    out: dict[str, float] = {"n": float(x.size)}
    for name, stat in (("mean", np.mean), ("iqm", iqm)):
        low, high = bootstrap_ci(x, stat, seed=seed)
        out |= {name: float(stat(x)), f"{name}_ci_low": low, f"{name}_ci_high": high}
    return out
