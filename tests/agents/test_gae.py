"""GAE against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from agents.gae import gae

R = torch.tensor([1.0, 2.0, 3.0])
V = torch.tensor([0.5, 0.6, 0.7])


def test_gae_matches_hand_computed_values_within_one_episode():
    # γ = 0.9, λ = 0.8, truncated after step 2 with V(final) = 0.8
    adv, ret = gae(R, V, torch.tensor([0.6, 0.7, 0.8]), torch.tensor([False, False, True]), 0.9, 0.8)
    # δ2 = 3 + 0.9·0.8 − 0.7 = 3.02; δ1 = 2 + 0.9·0.7 − 0.6 = 2.03; δ0 = 1 + 0.9·0.6 − 0.5 = 1.04; γλ = 0.72
    expected = torch.tensor([1.04 + 0.72 * (2.03 + 0.72 * 3.02), 2.03 + 0.72 * 3.02, 3.02])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + V)


def test_gae_does_not_reach_across_an_episode_end():
    # the episode terminates at step 1 (next value 0), a new one starts at step 2
    adv, _ = gae(R, V, torch.tensor([0.6, 0.0, 0.8]), torch.tensor([False, True, True]), 0.9, 0.8)
    torch.testing.assert_close(adv, torch.tensor([1.04 + 0.72 * 1.4, 1.4, 3.02]))


def test_gae_keeps_the_task_and_env_axes_apart():
    t, n, e = 5, 3, 2
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(t, n, e, generator=g) for _ in range(3))
    ends = torch.rand(t, n, e, generator=g) < 0.3
    adv, _ = gae(r, v, nv, ends, 0.99, 0.95)
    for i in range(n):
        for j in range(e):
            one, _ = gae(r[:, i, j], v[:, i, j], nv[:, i, j], ends[:, i, j], 0.99, 0.95)
            torch.testing.assert_close(adv[:, i, j], one)


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_gae_limits_are_td_error_and_monte_carlo(lam):
    nv = torch.tensor([0.6, 0.7, 0.0])
    ends = torch.tensor([False, False, True])
    adv, ret = gae(R, V, nv, ends, 1.0, lam)
    if lam == 0.0:
        torch.testing.assert_close(adv, R + nv - V)
    else:
        torch.testing.assert_close(ret, torch.tensor([6.0, 5.0, 3.0]))  # undiscounted reward-to-go
