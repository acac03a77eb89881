"""The inner loop, the one home of a gradient adaptation step: φ is differentiable exactly when its start was, only
parameters with a step size move, and its diagnostics say how far each task's policy moved."""

from __future__ import annotations

import pytest
import torch

from agents.inner_loop import InnerLoop
from agents.policy import ActorCritic, evaluate, init_params, log_prob, stack
from agents.ppo import LossWeights
from agents.rollout import Rollout

N, T, E, OBS, ACT = 3, 16, 4, 2, 1  # tasks, steps, envs per task, obs and action sizes


def setup(lr: float, steps: int = 1, **kw) -> tuple[InnerLoop, dict, Rollout]:
    module = ActorCritic(OBS, ACT, (8,)).double()
    theta = {k: v.double() for k, v in init_params(module, 0).items()}
    rates = kw.pop("rates", dict.fromkeys(theta, lr))
    loop = InnerLoop(module, LossWeights(0.2, 0.5, 0.0, 0.0), "value", 0.99, 0.95, steps, rates, **kw)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(T, N, E, OBS, generator=g, dtype=torch.float64)
    actions = torch.randn(T, N, E, ACT, generator=g, dtype=torch.float64)
    with torch.no_grad():
        mean, log_std, value = evaluate(module, stack(theta, N), obs.transpose(0, 1))
        lp = log_prob(actions.transpose(0, 1), mean, log_std).transpose(0, 1)
    support = Rollout(
        obs=obs,
        raw_obs=obs,
        actions=actions,
        log_probs=lp,
        values=value.transpose(0, 1),
        rewards=torch.randn(T, N, E, generator=g, dtype=torch.float64),
        next_values=torch.zeros(T, N, E, dtype=torch.float64),
        episode_ends=torch.zeros(T, N, E, dtype=torch.bool),
        stats={},
    )
    return loop, theta, support


def test_a_detached_start_gives_a_detached_policy_and_a_tracked_one_keeps_its_graph_to_theta():
    loop, theta, support = setup(0.1)
    phi, _ = loop.adapt(loop.start(theta, N), support)
    assert not any(v.requires_grad for v in phi.values())
    tracked = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    phi, _ = loop.adapt(stack(tracked, N), support)
    (grad,) = torch.autograd.grad(phi["pi.2.bias"].sum(), [tracked["pi.2.bias"]])
    assert torch.all(grad != 0)


def test_only_parameters_with_a_step_size_move():
    loop, theta, support = setup(0.1, rates={"pi.2.bias": 0.5})
    start = loop.start(theta, N)
    phi, _ = loop.adapt(start, support)
    moved = [k for k in phi if not torch.equal(phi[k], start[k])]
    assert moved == ["pi.2.bias"]


def test_diagnostics_say_how_far_each_tasks_policy_moved_on_its_support_data():
    small, theta, support = setup(1e-6)
    large, _, _ = setup(1.0)
    _, still = small.adapt(small.start(theta, N), support)
    _, moved = large.adapt(large.start(theta, N), support)
    assert set(moved) == {"loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"}
    assert all(v.shape == (N,) for v in moved.values())
    assert still["approx_kl"].abs().max() < 1e-8 and torch.all(still["clip_fraction"] == 0)
    assert torch.all(moved["approx_kl"] > 1e-4) and torch.all(moved["clip_fraction"] > 0)
    # the loss terms are those θ starts from: the same whatever the step size
    torch.testing.assert_close(still["loss"], moved["loss"])


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_keeps_the_inner_gradients_dependence_on_theta(steps):
    first, theta, support = setup(0.3, steps)
    second, _, _ = setup(0.3, steps, second_order=True)
    grads = []
    for loop in (first, second):
        tracked = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        phi, _ = loop.adapt(stack(tracked, N), support)
        out = phi["pi.2.weight"].square().sum()
        grads.append(torch.autograd.grad(out, [tracked["pi.0.weight"]], allow_unused=True)[0])
    # first order: φ_k = θ_k − α g_k with g_k a constant, so the last layer's φ does not depend on the first layer's θ
    assert grads[0] is None and grads[1].abs().sum() > 0
