"""Generalized advantage estimation (Schulman et al. 2016) and the discounted return, as pure functions."""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    episode_ends: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets.

    :param rewards: ``r_t``, ``[T, ...]`` (e.g. ``[T, n_tasks, envs_per_task]``).
    :param values: ``V(s_t)``, ``[T, ...]``.
    :param next_values: value of the state after step ``t``, ``[T, ...]``: ``V(s_{t+1})``; at a truncated episode's
        last step, the value of its final observation; where the episode terminated, 0.
    :param episode_ends: bool ``[T, ...]``, the episode ended at step ``t`` (terminated or truncated): the advantage
        recursion does not reach across it.
    :return: ``advantages [T, ...]`` with ``A_t = δ_t + γλ(1 - end_t) A_{t+1}``, ``δ_t = r_t + γ next_t - V(s_t)``;
        and ``returns = advantages + values``.
    """
    delta = rewards + gamma * next_values - values
    carry = 1.0 - episode_ends.to(rewards.dtype)
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = delta[t] + gamma * lam * carry[t] * running
        advantages[t] = running
    return advantages, advantages + values


def discounted_returns(rewards: torch.Tensor, valid: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R_t = γ R_{t−1} + r_t`` from the rollout's start, ``[T, ...]`` like ``rewards``; 0 where not ``valid``.

    The running return SB3's ``VecNormalize`` tracks: its standard deviation scales rewards so that value targets
    are of order one whatever a family's reward scale.
    """
    out, running = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0]):
        running = torch.where(valid[t], gamma * running + rewards[t], 0.0)
        out[t] = running
    return out
