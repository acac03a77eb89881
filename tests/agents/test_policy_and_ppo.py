"""The functional actor-critic and the PPO loss: vmapped evaluation equals per-task calls, and the loss equals a
hand-computed value."""

from __future__ import annotations

import math

import torch
from torch.func import functional_call

from agents.policy import ActorCritic, entropy, evaluate, init_params, log_prob, stack
from agents.ppo import LossWeights, ppo_loss
from agents.rollout import Rollout


def test_vmapped_policy_equals_per_task_calls():
    module = ActorCritic(5, 3, (16, 16))
    params = [init_params(module, seed) for seed in range(4)]
    stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
    obs = torch.randn(4, 7, 5)
    mean, log_std, value = evaluate(module, stacked, obs)
    for i, p in enumerate(params):
        m, s, v = functional_call(module, p, (obs[i],))
        torch.testing.assert_close(mean[i], m)
        torch.testing.assert_close(log_std[i], s)
        torch.testing.assert_close(value[i], v)


def test_init_is_seeded_and_stack_shares_storage_with_theta():
    module = ActorCritic(3, 2)
    a, b, c = init_params(module, 1), init_params(module, 1), init_params(module, 2)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    s = stack(a, 5)
    assert s["pi.0.weight"].shape == (5, *a["pi.0.weight"].shape)
    assert s["pi.0.weight"].data_ptr() == a["pi.0.weight"].data_ptr()


def test_init_sets_every_action_log_std_and_nothing_else():
    module = ActorCritic(3, 2)
    default, quiet = init_params(module, 1), init_params(module, 1, log_std=-1.0)
    assert torch.equal(default["log_std"], torch.zeros(2)) and torch.equal(quiet["log_std"], torch.full((2,), -1.0))
    assert all(torch.equal(default[k], quiet[k]) for k in default if k != "log_std")


def test_log_prob_and_entropy_are_the_diagonal_gaussians():
    mean, log_std = torch.zeros(1, 4, 2), torch.log(torch.tensor([[0.5, 2.0]]))
    a = torch.randn(1, 4, 2)
    expected = torch.distributions.Normal(mean, log_std.exp()[:, None, :]).log_prob(a).sum(-1)
    torch.testing.assert_close(log_prob(a, mean, log_std), expected)
    torch.testing.assert_close(entropy(log_std), torch.distributions.Normal(0, log_std.exp()).entropy().sum(-1))


def constant_policy(mu: float, sigma: float, v: float) -> tuple[ActorCritic, dict]:
    """A policy whose mean is ``mu``, std ``sigma`` and value ``v`` for every observation (one task)."""
    module = ActorCritic(2, 1, (4,))
    params = {k: torch.zeros(1, *p.shape) for k, p in module.named_parameters()}
    params["pi.2.bias"] += mu
    params["vf.2.bias"] += v
    params["log_std"] += math.log(sigma)
    return module, params


def two_step_batch() -> tuple[Rollout, torch.Tensor, torch.Tensor]:
    """Two steps of one task: the rollout, advantages 1 and 3, returns 1 and 2."""
    shape = (1, 1, 2)  # [T, n, E]
    batch = Rollout(
        obs=torch.randn(*shape, 2),
        raw_obs=torch.zeros(*shape, 2),
        actions=torch.tensor([0.0, 1.0]).reshape(*shape, 1),
        log_probs=torch.tensor([-1.0, -1.2]).reshape(shape),
        values=torch.zeros(shape),
        rewards=torch.zeros(shape),
        next_values=torch.zeros(shape),
        episode_ends=torch.zeros(shape, dtype=torch.bool),
        stats={},
    )
    return batch, torch.tensor([1.0, 3.0]).reshape(shape), torch.tensor([1.0, 2.0]).reshape(shape)


def test_ppo_loss_matches_a_hand_computed_value():
    module, params = constant_policy(mu=0.5, sigma=0.5, v=0.3)
    batch, advantages, returns = two_step_batch()
    loss, terms = ppo_loss(module, params, batch, advantages, returns, LossWeights(0.2, 0.5, 0.01, 10.0))
    # log π(a) = −0.5·((a − 0.5)/0.5)² − ln 0.5 − 0.5 ln 2π = −0.725791 for both actions
    # ratios e^(−0.725791 + 1.0) = 1.315511 and e^(−0.725791 + 1.2) = 1.606736
    # normalized advantages ∓0.707107; surrogates min(1.315511·−0.707107, 1.2·−0.707107) = −0.930206 and
    # min(1.606736·0.707107, 1.2·0.707107) = 0.848528 → policy loss −(−0.930206 + 0.848528)/2 = 0.040839
    # value loss: ((0.3 − 1)² + (0.3 − 2)²)/2 = 1.69 over the returns' variance 0.5 = 3.38
    # entropy: ln 0.5 + 0.5 ln(2πe) = 0.725792
    torch.testing.assert_close(terms["policy_loss"], torch.tensor([0.040839]), atol=1e-5, rtol=0)
    torch.testing.assert_close(terms["value_loss"], torch.tensor([3.38]), atol=1e-5, rtol=0)
    torch.testing.assert_close(terms["entropy"], torch.tensor([0.725792]), atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, torch.tensor([0.040839 + 0.5 * 3.38 - 0.01 * 0.725792]), atol=1e-5, rtol=0)
    torch.testing.assert_close(terms["clip_fraction"], torch.tensor([1.0]))
    assert terms["bound_loss"].item() == 0  # the mean 0.5 is inside the action bounds: no penalty at any weight


def test_the_bound_loss_pulls_a_mean_far_past_the_action_bounds_back():
    batch, advantages, returns = two_step_batch()
    for mu, expected in ((2.5, 0.25), (-3.0, 1.0), (1.9, 0.0)):  # σ = 0.5: penalized past ±2
        module, params = constant_policy(mu=mu, sigma=0.5, v=0.3)
        params = {k: v.requires_grad_(True) for k, v in params.items()}
        without, terms = ppo_loss(module, params, batch, advantages, returns, LossWeights(0.2, 0.5, 0.0, 0.0))
        with_bound, _ = ppo_loss(module, params, batch, advantages, returns, LossWeights(0.2, 0.5, 0.0, 2.0))
        torch.testing.assert_close(terms["bound_loss"], torch.tensor([expected]))
        torch.testing.assert_close(with_bound - without, torch.tensor([2.0 * expected]))
        (grad,) = torch.autograd.grad((with_bound - without).sum(), params["pi.2.bias"])
        # d/dμ 2·(|μ| − 2)² = 4·(|μ| − 2)·sign μ: a descent step moves μ back inside
        torch.testing.assert_close(grad, torch.tensor([[4 * math.copysign(max(abs(mu) - 2, 0), mu)]]))
