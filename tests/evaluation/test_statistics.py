"""The aggregate statistics on distributions whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.statistics import bootstrap_ci, iqm, stratified_bootstrap_ci, summarize


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm(np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -100.0])) == pytest.approx(3.5)
    assert iqm(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 10.0, 10.0]]), axis=1).tolist() == [2.5, 5.0]


def test_iqm_of_a_symmetric_distribution_is_its_centre_despite_outliers():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(3.0, 1.0, 10_000), np.full(500, 1e6)])  # 5 % wild outliers
    assert iqm(x) == pytest.approx(3.0, abs=0.1)
    assert np.mean(x) > 1000


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = [
        low <= 2.0 <= high
        for low, high in (bootstrap_ci(rng.exponential(2.0, 60), np.mean, n_boot=1000, seed=i) for i in range(200))
    ]
    assert 0.88 <= np.mean(covered) <= 0.99


def test_bootstrap_interval_width_shrinks_like_one_over_root_n():
    rng = np.random.default_rng(2)
    widths = []
    for n in (100, 1600):
        low, high = bootstrap_ci(rng.normal(0.0, 1.0, n), np.mean)
        widths.append(high - low)
    assert widths[0] / widths[1] == pytest.approx(4.0, rel=0.25)
    assert widths[0] == pytest.approx(2 * 1.96 / np.sqrt(100), rel=0.2)


def test_summarize_reports_mean_and_iqm_with_intervals():
    s = summarize(np.arange(1.0, 101.0))
    assert s["n"] == 100 and s["mean"] == pytest.approx(50.5) and s["iqm"] == pytest.approx(50.5)
    assert s["mean_ci_low"] < 50.5 < s["mean_ci_high"] and s["iqm_ci_low"] < 50.5 < s["iqm_ci_high"]
    with pytest.raises(ValueError, match="at least one sample"):
        bootstrap_ci(np.array([]), np.mean)


def test_the_stratified_bootstrap_of_one_group_is_the_plain_bootstrap():
    x = np.random.default_rng(3).exponential(2.0, 40)
    for stat in (np.mean, iqm):
        assert stratified_bootstrap_ci([x], stat, seed=7) == bootstrap_ci(x, stat, seed=7)


def test_the_stratified_interval_narrows_with_more_groups_of_the_same_data():
    x = np.random.default_rng(4).normal(0.0, 1.0, 50)
    widths = [np.subtract(*stratified_bootstrap_ci([x] * n, np.mean)[::-1]) for n in (1, 4, 16)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[1] == pytest.approx(2.0, rel=0.2) and widths[0] / widths[2] == pytest.approx(4.0, rel=0.2)


def test_the_stratified_interval_leaves_out_the_spread_between_groups_that_resampling_the_pool_adds():
    # Two runs, one solving every task and one none: resampling the pool mixes them, each run's own draw does not.
    groups = [np.ones(20), np.zeros(20)]
    assert stratified_bootstrap_ci(groups, np.mean) == (0.5, 0.5)
    low, high = bootstrap_ci(np.concatenate(groups), np.mean)
    assert low < 0.4 and high > 0.6
    with pytest.raises(ValueError, match="at least one sample each"):
        stratified_bootstrap_ci([np.ones(3), np.array([])], np.mean)
