"""The outer loops on a tiny problem: MAML's meta-gradient is the true derivative of the post-adaptation loss
(finite differences agree) and differs from FOMAML's; Meta-SGD's step sizes learn; Reptile moves θ toward the
adapted parameters; multitask PPO takes ``epochs`` full-batch steps."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from agents.policy import ActorCritic, evaluate, init_params, log_prob, stack
from agents.ppo import ppo_loss
from agents.rollout import Rollout
from meta.algorithms import make_outer_loop
from meta.config import TrainConfig

N, T, E, OBS, ACT = 3, 4, 2, 2, 1  # tasks, steps, envs per task, obs and action sizes


def rollout(module: ActorCritic, params: dict, seed: int) -> Rollout:
    """Synthetic rollout of each task's policy ``params`` (stacked), float64; log-probs are the policy's own."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, N, E, OBS, generator=g, dtype=torch.float64)
    actions = torch.randn(T, N, E, ACT, generator=g, dtype=torch.float64)
    with torch.no_grad():
        mean, log_std, value = evaluate(module, params, obs.transpose(0, 1))
        lp = log_prob(actions.transpose(0, 1), mean, log_std).transpose(0, 1)
    shape = (T, N, E)
    return Rollout(
        obs=obs,
        raw_obs=obs,
        actions=actions,
        log_probs=lp,
        values=value.transpose(0, 1),
        rewards=torch.randn(shape, generator=g, dtype=torch.float64),
        next_values=torch.randn(shape, generator=g, dtype=torch.float64),
        episode_ends=torch.zeros(shape, dtype=torch.bool),
        stats={},
    )


def setup(algo: str, **kw):
    cfg = dataclasses.replace(TrainConfig(), algo=algo, inner_steps=2, inner_lr=0.3, hidden=(8,), **kw)
    module = ActorCritic(OBS, ACT, cfg.hidden, cfg.context_dim).double()
    theta = {k: v.double() for k, v in init_params(module, 0).items()}
    loop = make_outer_loop(cfg, module, theta)
    support = rollout(module, stack(loop.theta, N), seed=1)
    return cfg, module, loop, support


def post_adaptation_loss(loop, support, query) -> torch.Tensor:
    phi, _ = loop.adapt(support)
    adv, ret = loop.inner.advantages(query)
    return ppo_loss(loop.module, phi, query, adv, ret, loop.inner.loss)[0].mean()


def meta_gradient(algo: str, **kw) -> tuple[torch.Tensor, object, Rollout, Rollout]:
    _, module, loop, support = setup(algo, **kw)
    query = rollout(module, stack(loop.theta, N), seed=2)
    loss = post_adaptation_loss(loop, support, query)
    grads = torch.autograd.grad(loss, list(loop.theta.values()))
    return torch.cat([g.flatten() for g in grads]), loop, support, query


@pytest.mark.parametrize("context_dim", [0, 3])  # with a context, θ's weights reach the loss through its step too
def test_maml_meta_gradient_matches_finite_differences(context_dim: int):
    grad, loop, support, query = meta_gradient("maml", context_dim=context_dim, context_lr=2.0)
    flat = torch.cat([v.detach().flatten() for v in loop.theta.values()])
    direction = torch.randn(flat.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    direction /= direction.norm()

    def loss_at(x: torch.Tensor) -> float:
        with torch.no_grad():
            offset = 0
            for v in loop.theta.values():
                v.copy_(x[offset : offset + v.numel()].view_as(v))
                offset += v.numel()
        return post_adaptation_loss(loop, support, query).item()

    eps = 1e-5
    finite = (loss_at(flat + eps * direction) - loss_at(flat - eps * direction)) / (2 * eps)
    loss_at(flat)
    assert grad @ direction == pytest.approx(finite, rel=1e-4, abs=1e-8)


def test_fomaml_gradient_drops_the_second_order_terms():
    maml, *_ = meta_gradient("maml")
    fomaml, *_ = meta_gradient("fomaml")
    assert not torch.allclose(maml, fomaml, rtol=1e-3)
    assert torch.nn.functional.cosine_similarity(maml, fomaml, dim=0) > 0.5  # same objective, first-order view


def test_metasgd_step_sizes_receive_gradients_and_change():
    _, module, loop, support = setup("metasgd")
    before = {k: v.detach().clone() for k, v in loop.alpha.items()}
    phi, _ = loop.adapt(support)
    query = rollout(module, {k: v.detach() for k, v in phi.items()}, seed=2)
    loop.update(phi, support, query)
    assert all(loop.alpha[k].grad is not None and loop.alpha[k].grad.abs().sum() > 0 for k in loop.alpha)
    assert any(not torch.equal(before[k], loop.alpha[k]) for k in loop.alpha)


@pytest.mark.parametrize("algo", ["maml", "metasgd"])
def test_with_a_context_the_inner_loop_adapts_the_context_alone(algo: str):
    *_, loop, support = setup(algo, context_dim=3)
    phi, _ = loop.adapt(support)
    theta = stack(loop.theta, N)
    assert all(torch.equal(phi[k], theta[k]) for k in theta if k != "context")
    assert (phi["context"] - theta["context"]).abs().min() > 0  # every task's context moved
    if algo == "metasgd":
        assert list(loop.alpha) == ["context"]  # and only its step sizes are learnt


def test_reptile_moves_theta_toward_the_adapted_parameters():
    *_, loop, support = setup("reptile", reptile_epsilon=0.25)
    theta0 = {k: v.detach().clone() for k, v in loop.theta.items()}
    phi, _ = loop.adapt(support)
    target = {k: v.detach().mean(0) for k, v in phi.items()}
    loop.update(phi, support, support)
    for k in theta0:
        torch.testing.assert_close(loop.theta[k].detach(), theta0[k] + 0.25 * (target[k] - theta0[k]))
    assert sum((target[k] - theta0[k]).abs().sum() for k in theta0) > 0


@pytest.mark.parametrize("epochs", [1, 3])
def test_multitask_takes_one_full_batch_adam_step_per_epoch_and_leaves_theta_unadapted(epochs: int):
    _, module, loop, support = setup("multitask", epochs=epochs)
    query = rollout(module, stack(loop.theta, N), seed=2)
    theta0 = {k: v.detach().clone() for k, v in loop.theta.items()}
    phi, _ = loop.adapt(support)
    assert all(torch.equal(phi[k][i], theta0[k]) for k in theta0 for i in range(N))
    loop.update(phi, support, query)
    assert {int(s["step"]) for s in loop.optimizer.state.values()} == {epochs}
    assert any(not torch.equal(loop.theta[k].detach(), theta0[k]) for k in theta0)


def test_maml_outer_step_lowers_the_post_adaptation_loss():
    _, module, loop, support = setup("maml", outer_lr=1e-2)
    query = rollout(module, stack(loop.theta, N), seed=2)
    before = post_adaptation_loss(loop, support, query).item()
    for _ in range(5):
        phi, _ = loop.adapt(support)
        loop.update(phi, support, query)
    assert post_adaptation_loss(loop, support, query).item() < before


def test_the_linear_critic_baselines_advantages_by_each_tasks_own_fit_not_the_value_head():
    _, _, loop, support = setup("maml", critic="linear")
    adv, ret = loop.inner.advantages(support)
    scrambled = support._replace(values=torch.randn_like(support.values), next_values=torch.randn_like(adv))
    torch.testing.assert_close(loop.inner.advantages(scrambled), (adv, ret))
    _, _, value_loop, _ = setup("maml", critic="value")
    assert not torch.allclose(value_loop.inner.advantages(scrambled)[0], value_loop.inner.advantages(support)[0])
