"""A context learner (PEARL-style, Rakelly et al. 2019, trained on-policy): a task embedding ``z`` inferred from a
task's support transitions is its adaptation.

An encoder maps every transition (observation, action, reward, next observation) to a Gaussian factor
``N(μ_i, σ_i²)`` over ``z``; a task's posterior is the product of its transitions' factors and the prior ``N(0, I)``
(PEARL's product of Gaussians): precision ``1 + Σ 1/σ_i²``, mean ``Σ (μ_i/σ_i²) / precision``. The product rather
than a mean of embeddings, because it is permutation invariant *and* grows more certain with every transition, so one
encoder serves a posterior after one episode and after eighteen; and because it is two running sums, a task's
posterior is updated after every step of all its worlds at once, without a loop over transitions. The policy and the
value read ``(observation, z)``. Each world acts with a ``z`` sampled from its task's posterior at the start of each
of its episodes (posterior sampling: the prior at the first), held through the episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from agents.inner_loop import EpisodePolicy
from agents.normalizer import ObsNormalizer
from agents.policy import Params, mean_action, mlp, orthogonal
from envs.noise import action_noise
from envs.oracle import OracleFamily
from envs.vec_env import TaskVecEnv


class ContextActorCritic(nn.Module):
    """``forward(obs [..., obs_dim], z [..., Z]) -> (mean [..., A], log_std [A], value [...])``; ``encoder`` maps a
    transition ``[..., 2·obs_dim + A + 1]`` to a factor's mean and log-variance ``[..., 2Z]``; ``task_head`` maps ``z``
    to the task's scaled parameters (the privileged auxiliary loss, training only)."""

    def __init__(
        self, obs_dim: int, action_dim: int, n_params: int, latent: int = 8, hidden: tuple[int, ...] = (64, 64)
    ) -> None:
        super().__init__()
        self.obs_dim, self.latent = obs_dim, latent
        self.encoder = mlp([2 * obs_dim + action_dim + 1, *hidden, 2 * latent])
        self.pi = mlp([obs_dim + latent, *hidden, action_dim])
        self.vf = mlp([obs_dim + latent, *hidden, 1])
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.task_head = nn.Linear(latent, n_params)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, z], dim=-1)
        return self.pi(x), self.log_std, self.vf(x).squeeze(-1)


def init_context_params(module: ContextActorCritic, seed: int, log_std: float = 0.0) -> Params:
    """Orthogonal weights (√2 in hidden layers; 0.01 for the action mean, 1 for the value and the other outputs),
    zero biases, every action's log-std ``log_std``."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, p in module.named_parameters():
        t = torch.zeros_like(p)
        if name.endswith("weight"):
            parts = name.split(".")
            last = parts[0] == "task_head" or int(parts[1]) == len(getattr(module, parts[0])) - 1
            gain = (0.01 if parts[0] == "pi" else 1.0) if last else math.sqrt(2)
            t = orthogonal(t.shape, gain, g)
        params[name] = t
    params["log_std"] = torch.full_like(params["log_std"], log_std)
    return params


def submodule_params(params: Params, prefix: str) -> Params:
    """The parameters of submodule ``prefix`` (``encoder``, ``task_head``), named as the submodule names them."""
    return {k.removeprefix(prefix + "."): v for k, v in params.items() if k.startswith(prefix + ".")}


def transitions(obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """What the encoder reads of a transition: ``[..., 2·obs_dim + A + 1]`` (observations normalized, the action as
    the env applied it, the reward normalized)."""
    return torch.cat([obs, action.clamp(-1, 1), reward[..., None], next_obs], dim=-1)


def factors(module: ContextActorCritic, theta: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each transition's evidence ``(1/σ², μ/σ²)``, each ``[..., Z]``, from transitions ``x`` (:func:`transitions`).
    σ² is kept in [1e-3, 1e3]: no single transition decides the task."""
    out = functional_call(module.encoder, submodule_params(theta, "encoder"), (x,))
    mean, log_var = out.split(module.latent, dim=-1)
    precision = torch.exp(-log_var.clamp(-3 * math.log(10), 3 * math.log(10)))
    return precision, mean * precision


def posterior(precision_sum: torch.Tensor, weighted_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``[..., Z]`` of the prior ``N(0, I)`` times factors summing to these."""
    precision = 1.0 + precision_sum
    return weighted_sum / precision, precision.rsqrt()


def kl_to_prior(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, std²) ‖ N(0, I))`` summed over the last axis: ``[..., Z] -> [...]``."""
    return 0.5 * (std.square() + mean.square() - 1 - 2 * std.log()).sum(-1)


def task_targets(env: TaskVecEnv) -> torch.Tensor:
    """The scaled parameters ``[n, P]`` of ``env``'s tasks (each about [-1, 1], as the oracle reads them): what the
    privileged auxiliary loss asks ``z`` to predict."""
    family = env.family.base if isinstance(env.family, OracleFamily) else env.family
    scaled = OracleFamily(family).scaled(env.sim.task).to(torch.float32)  # [B, P], worlds task-major
    return scaled.reshape(env.n_tasks, env.envs_per_task, -1)[:, 0]


class Context(NamedTuple):
    """What a context learner knows of each task: its weights θ and the sums of its tasks' evidence so far."""

    theta: Params
    precision_sum: torch.Tensor
    """``Σ 1/σ_i² [n, Z]``."""
    weighted_sum: torch.Tensor
    """``Σ μ_i/σ_i² [n, Z]``."""


class ContextRollout(NamedTuple):
    """A context learner's rollout ``[T, n, E, ...]``."""

    obs: torch.Tensor
    """Normalized observations ``[T, n, E, obs_dim]``."""
    raw_obs: torch.Tensor
    """Raw observations and rewards ``[T, n, E, obs_dim + 1]`` (what the normalizer tracks)."""
    transitions: torch.Tensor
    """What the encoder read, ``[T, n, E, 2·obs_dim + A + 1]``."""
    z: torch.Tensor
    """The ``z`` each world acted with ``[T, n, E, Z]``: ``mean + std · noise`` of the posterior of the evidence
    before the step."""
    noise: torch.Tensor
    """The episode's ``ε`` ``[T, n, E, Z]``."""
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    next_values: torch.Tensor
    episode_ends: torch.Tensor
    start: torch.Tensor
    """The evidence sums the rollout began from ``[1, n, 1, 2Z]``."""
    last: torch.Tensor
    """The evidence sums at the rollout's end ``[1, n, 1, 2Z]``."""
    task: torch.Tensor
    """The tasks' scaled parameters ``[1, n, 1, P]`` (privileged: the auxiliary loss only)."""
    stats: dict[str, torch.Tensor]
    """Per task as :class:`agents.recurrent.Trial`'s: means over every episode ``[n]`` and per episode index
    ``[n, N]``."""


@torch.no_grad()
def collect_context(
    env: TaskVecEnv,
    module: ContextActorCritic,
    theta: Params,
    normalizer: ObsNormalizer,
    steps: int,
    generator: torch.Generator,
    seed: int,
    start: Context | None = None,
) -> ContextRollout:
    """Reset ``env`` with ``seed`` and run ``steps`` control steps; each task's posterior starts from ``start`` (the
    prior when ``None``) and takes in every transition of all its worlds as it happens; each world acts with
    ``mean + std · ε`` of it, ``ε`` drawn at each of its episode starts. Noise is drawn for the whole meta-batch (a
    shard reproduces its part of the whole)."""
    obs = env.reset(seed=seed)
    mine = slice(env.first_task, env.first_task + env.n_tasks)
    env.episode_stats()
    n, e, a_dim, z_dim, d = env.n_tasks, env.envs_per_task, env.action_dim, module.latent, env.obs_dim
    horizon = env.family.episode_length
    episodes = -(-steps // horizon)
    if start is None:
        prec_sum, weighted_sum = torch.zeros(n, z_dim), torch.zeros(n, z_dim)
    else:
        prec_sum, weighted_sum = start.precision_sum.clone(), start.weighted_sum.clone()
    first = torch.cat([prec_sum, weighted_sum], -1)[None, :, None]
    buf = {
        "obs": torch.zeros(steps, n, e, d),
        "raw_obs": torch.zeros(steps, n, e, d + 1),
        "transitions": torch.zeros(steps, n, e, 2 * d + a_dim + 1),
        "z": torch.zeros(steps, n, e, z_dim),
        "noise": torch.zeros(steps, n, e, z_dim),
        "actions": torch.zeros(steps, n, e, a_dim),
        **{k: torch.zeros(steps, n, e) for k in ("log_probs", "values", "rewards", "final_values")},
    }
    terminated_all = torch.zeros(steps, n, e, dtype=torch.bool)
    truncated_all = torch.zeros_like(terminated_all)
    new_episode = torch.ones(n, e, dtype=torch.bool)
    eps = torch.zeros(n, e, z_dim)
    counts = torch.zeros(n, e, dtype=torch.long)
    running, length = torch.zeros(n, e, dtype=torch.float64), torch.zeros(n, e, dtype=torch.float64)
    per_episode = {k: torch.zeros(n, e, episodes, dtype=torch.float64) for k in ("return", "success", "length")}
    obs_part = slice(0, d)
    for t in range(steps):
        if new_episode.any():  # each episode's own draw from the posterior
            fresh = action_noise(generator, (n, e, z_dim), mine, env.total_tasks)
            eps = torch.where(new_episode[..., None], fresh, eps)
        mean, std = posterior(prec_sum, weighted_sum)
        z = mean[:, None] + std[:, None] * eps
        o = normalizer(obs, obs_part)
        mean_a, log_std, value = functional_call(module, theta, (o, z))
        noise = action_noise(generator, (n, e, a_dim), mine, env.total_tasks)
        action = mean_a + log_std.exp() * noise
        buf["obs"][t], buf["z"][t], buf["noise"][t] = o, z, eps
        buf["actions"][t], buf["values"][t] = action, value
        buf["log_probs"][t] = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        next_obs, reward, terminated, truncated, info = env.step(action)
        buf["rewards"][t], terminated_all[t], truncated_all[t] = reward, terminated, truncated
        buf["raw_obs"][t] = torch.cat([obs, reward[..., None]], -1)
        r = normalizer(reward[..., None], slice(d, d + 1))[..., 0]
        x = transitions(o, action, r, normalizer(info["final_obs"], obs_part))
        buf["transitions"][t] = x
        p, w = factors(module, theta, x)
        prec_sum, weighted_sum = prec_sum + p.sum(1), weighted_sum + w.sum(1)
        done = terminated | truncated
        if truncated.any():  # bootstrap a cut-off episode from the value of where it stopped
            final = normalizer(info["final_obs"], obs_part)
            buf["final_values"][t] = functional_call(module, theta, (final, z))[2]
        running += reward
        length += 1
        if done.any():
            index = counts.clamp(max=episodes - 1)[..., None]
            for key, now in (("return", running), ("success", info["is_success"]), ("length", length)):
                per_episode[key].scatter_add_(2, index, torch.where(done, now.double(), 0.0)[..., None])
            counts += done.long()
            running, length = torch.where(done, 0.0, running), torch.where(done, 0.0, length)
        new_episode = done
        obs = next_obs
    last_value = functional_call(module, theta, (normalizer(obs, obs_part), z))[2]
    ends = terminated_all | truncated_all
    following = torch.cat([buf["values"][1:], last_value[None]])
    next_values = torch.where(truncated_all, buf.pop("final_values"), torch.where(ends, 0.0, following))
    next_values = torch.where(terminated_all, 0.0, next_values)
    done_any = counts.clamp(min=1).double()
    stats = {}
    for key, value_of in per_episode.items():  # sums [n, E, N]: a world's unfinished last episode is not counted
        stats[key] = (value_of.sum(-1) / done_any).mean(1)
        stats[f"episode_{key}"] = value_of.mean(1)
    env.episode_stats()
    last = torch.cat([prec_sum, weighted_sum], -1)[None, :, None]
    return ContextRollout(
        **buf,
        next_values=next_values,
        episode_ends=ends,
        start=first,
        last=last,
        task=task_targets(env)[None, :, None],
        stats=stats,
    )


@dataclass(frozen=True)
class ContextAdaptation:
    """The context learner's answer to :class:`agents.inner_loop.Adaptation`: the state is each task's evidence, and
    adapting is adding a round's support transitions to it. A round's support episodes run side by side (one world
    each, pooling their transitions into the task's posterior as they happen); the evaluation episodes sample their
    ``z`` from the posterior the support episodes left."""

    module: ContextActorCritic

    def start(self, theta: Params, n_tasks: int) -> Context:
        zeros = torch.zeros(n_tasks, self.module.latent)
        return Context({k: v.detach() for k, v in theta.items()}, zeros, zeros.clone())

    def support_layout(self, episodes: int, horizon: int) -> tuple[int, int]:
        return episodes, horizon

    def collect(
        self, state: Context, env: TaskVecEnv, normalizer: ObsNormalizer, steps: int, noise: torch.Generator, seed: int
    ) -> ContextRollout:
        return collect_context(env, self.module, state.theta, normalizer, steps, noise, seed, start=state)

    def adapt(self, state: Context, support: ContextRollout) -> tuple[Context, dict[str, torch.Tensor]]:
        """The evidence of every support transition added to each task's."""
        z = self.module.latent
        last = support.last[0, :, 0]
        return Context(state.theta, last[:, :z], last[:, z:]), {}

    def policy(self, state: Context, task: int, normalizer: ObsNormalizer) -> EpisodePolicy:
        """The mean action with ``z`` the task's posterior mean."""
        params, observation = self.mlp_policy(state, task, normalizer)
        return lambda obs, reward: mean_action(params, observation, obs)

    def mlp_policy(self, state: Context, task: int, normalizer: ObsNormalizer) -> tuple[Params, ObsNormalizer]:
        """The policy and value with ``z`` fixed at the task's posterior mean, folded into their first layers' biases:
        an :class:`agents.policy.ActorCritic` of the observation alone, and the observation's normalizer."""
        z = posterior(state.precision_sum[task], state.weighted_sum[task])[0]
        d, theta = self.module.obs_dim, state.theta
        out = {k: v for k, v in theta.items() if k.split(".")[0] in ("pi", "vf", "log_std")}
        for net in ("pi", "vf"):
            weight = theta[f"{net}.0.weight"]
            out[f"{net}.0.weight"], out[f"{net}.0.bias"] = weight[:, :d], theta[f"{net}.0.bias"] + weight[:, d:] @ z
        return out, _obs_normalizer(normalizer, d)


def _obs_normalizer(normalizer: ObsNormalizer, obs_dim: int) -> ObsNormalizer:
    """The observation's part of a normalizer that also tracks the reward."""
    part = ObsNormalizer(obs_dim, normalizer.enabled)
    state = normalizer.state_dict()
    part.load_state_dict({**state, "mean": state["mean"][:obs_dim], "var": state["var"][:obs_dim]})
    return part
