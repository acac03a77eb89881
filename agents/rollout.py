"""Collecting rollouts of every task at once: all tasks' policies act in one batched call per step."""

from __future__ import annotations

from typing import NamedTuple

import torch

from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, evaluate, log_prob
from envs.noise import action_noise
from envs.vec_env import TaskVecEnv


class Rollout(NamedTuple):
    """What one rollout of a meta-batch holds; tensors are ``[T, n_tasks, envs_per_task, ...]``."""

    obs: torch.Tensor
    """Normalized observations the policy saw, ``[T, n, E, obs_dim]``."""
    raw_obs: torch.Tensor
    """The same before normalization (to update the normalizer), ``[T, n, E, obs_dim]``."""
    actions: torch.Tensor
    """Sampled actions before the env clips them, ``[T, n, E, A]``."""
    log_probs: torch.Tensor
    """Log-density of the actions under the collecting policy, ``[T, n, E]``."""
    values: torch.Tensor
    """``V(s_t)`` of the collecting policy's critic, ``[T, n, E]``."""
    rewards: torch.Tensor
    """``[T, n, E]``."""
    next_values: torch.Tensor
    """Value of the state after each step (see :func:`agents.gae.gae`), ``[T, n, E]``."""
    episode_ends: torch.Tensor
    """Bool ``[T, n, E]``: an episode ended at this step."""
    stats: dict[str, torch.Tensor]
    """Per-task statistics of the episodes that ended (``TaskVecEnv.episode_stats``), each ``[n]``."""


@torch.no_grad()
def collect(
    env: TaskVecEnv,
    module: ActorCritic,
    params: Params,
    normalizer: ObsNormalizer,
    steps: int,
    generator: torch.Generator,
    seed: int,
) -> Rollout:
    """Reset ``env`` with ``seed`` and run ``steps`` control steps of every task's policy.

    When ``env`` holds a shard of a meta-batch, resets and action noise are those its tasks would get in the
    whole batch (:mod:`envs.noise`), and ``generator`` ends in the state the whole batch would leave it in.

    :param params: task-stacked policy parameters ``[n_tasks, *shape]`` (task ``i`` acts in ``env``'s task ``i``).
    :param generator: source of the Gaussian action noise.
    """
    obs = env.reset(seed=seed)
    mine = slice(env.first_task, env.first_task + env.n_tasks)
    env.episode_stats()  # forget episodes from before this rollout
    n, e = env.n_tasks, env.envs_per_task
    zeros = torch.zeros(steps, n, e)
    buf = {k: zeros.clone() for k in ("log_probs", "values", "rewards", "final_values")}
    buf["obs"] = torch.zeros(steps, n, e, env.obs_dim)
    buf["raw_obs"] = torch.zeros_like(buf["obs"])
    buf["actions"] = torch.zeros(steps, n, e, env.action_dim)
    terminated_all = torch.zeros(steps, n, e, dtype=torch.bool)
    truncated_all = torch.zeros_like(terminated_all)
    for t in range(steps):
        o = normalizer(obs)
        mean, log_std, value = evaluate(module, params, o)
        noise = action_noise(generator, tuple(mean.shape), mine, env.total_tasks)
        action = mean + log_std.exp()[:, None, :] * noise
        buf["raw_obs"][t], buf["obs"][t], buf["actions"][t], buf["values"][t] = obs, o, action, value
        buf["log_probs"][t] = log_prob(action, mean, log_std)
        obs, reward, terminated, truncated, info = env.step(action)
        buf["rewards"][t] = reward
        terminated_all[t], truncated_all[t] = terminated, truncated
        if truncated.any():  # bootstrap a cut-off episode from the value of where it stopped
            buf["final_values"][t] = evaluate(module, params, normalizer(info["final_obs"]))[2]
    last_value = evaluate(module, params, normalizer(obs))[2]
    ends = terminated_all | truncated_all
    following = torch.cat([buf["values"][1:], last_value[None]])
    next_values = torch.where(truncated_all, buf["final_values"], torch.where(ends, 0.0, following))
    next_values = torch.where(terminated_all, 0.0, next_values)
    return Rollout(
        obs=buf["obs"],
        raw_obs=buf["raw_obs"],
        actions=buf["actions"],
        log_probs=buf["log_probs"],
        values=buf["values"],
        rewards=buf["rewards"],
        next_values=next_values,
        episode_ends=ends,
        stats=env.episode_stats(),
    )


def cat_rollouts(parts: list):
    """Rollouts (of one kind: :class:`Rollout` or another ``NamedTuple`` with a ``stats`` field and tensors
    ``[T, n, ...]``) of disjoint task sets as one, tasks in the order given (along the task axis)."""
    kind = type(parts[0])
    fields = {f: torch.cat([getattr(p, f) for p in parts], dim=1) for f in kind._fields if f != "stats"}
    stats = {k: torch.cat([p.stats[k] for p in parts]) for k in parts[0].stats}
    return kind(**fields, stats=stats)
