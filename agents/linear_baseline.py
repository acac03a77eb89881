"""A value baseline fitted to each task's own rollout: the linear feature baseline of the MAML paper's code
(rllab's ``LinearFeatureBaseline``, Duan et al. 2016), as a pure function.

A meta-learned value network predicts the return of an average task, so before adaptation its advantages for one
task are mostly the task's offset from that average. A least-squares fit to the task's own returns is refitted on
every rollout and gives each task's inner step advantages of its own.
"""

from __future__ import annotations

import torch

from agents.gae import gae

RIDGE = 1e-5
"""Ridge term, relative to the mean diagonal of each task's normal equations (keeps constant features solvable)."""


def linear_values(
    obs: torch.Tensor,
    rewards: torch.Tensor,
    episode_ends: torch.Tensor,
    gamma: float,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each task's least-squares fit of discounted returns-to-go on ``[o, o², t, t², t³, 1]`` (``o`` the observation
    clipped to ±10, ``t`` the step within the episode / 100), over all of its steps and episodes.

    :param obs: observations the policy saw, ``[T, n_tasks, envs_per_task, obs_dim]``.
    :param rewards: ``[T, n, E]``.
    :param episode_ends: bool ``[T, n, E]``; every rollout starts with fresh episodes.
    :param valid: bool ``[T, n, E]``, the steps to fit on (all when ``None``): a recurrent trial's world waits, not
        acting, after its episodes ended early, and those steps' returns say nothing of the policy's.
    :return: ``values [T, n, E]`` and ``next_values [T, n, E]`` as :func:`agents.gae.gae` takes them: the next step's
        fitted value, 0 where an episode ended (the time features make the end of the horizon predictable, as in the
        MAML paper), and at the rollout's last step of an unfinished episode its own value.
    """
    steps, n, envs, _ = obs.shape
    carry = 1.0 - episode_ends.to(rewards.dtype)
    zeros = torch.zeros_like(rewards)
    returns, _ = gae(rewards, zeros, zeros, episode_ends, gamma, 1.0)  # with V = 0 and λ = 1: returns-to-go
    t, clock = torch.empty_like(rewards), torch.zeros_like(rewards[0])
    for i in range(steps):
        t[i] = clock
        clock = (clock + 1) * carry[i]
    o, time = obs.clamp(-10, 10), (t / 100)[..., None]
    features = torch.cat([o, o.square(), time, time**2, time**3, torch.ones_like(time)], dim=-1)
    x = features.transpose(0, 1).reshape(n, steps * envs, -1).double()  # [n, T·E, F]
    y = returns.transpose(0, 1).reshape(n, steps * envs, 1).double()
    fit = x if valid is None else x * valid.transpose(0, 1).reshape(n, steps * envs, 1)  # 0 rows drop out of the fit
    gram = fit.transpose(1, 2) @ fit
    scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-8)[:, None, None]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    weights = torch.linalg.solve(gram + RIDGE * scale * eye, fit.transpose(1, 2) @ y)
    values = (x @ weights).reshape(n, steps, envs).transpose(0, 1).to(rewards.dtype)
    following = torch.cat([values[1:], values[-1:]])
    return values, following * carry
