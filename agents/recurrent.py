"""RL²'s recurrent policy (Duan et al. 2016; Wang et al. 2016): a memory that carries across the episodes of a task
is its adaptation.

At every control step the policy reads the observation, the previous action, the previous reward and a flag that an
episode starts there (normalized together by the run's observation normalizer). A GRU folds them into its state
``h``, the memory; the policy and value heads read the observation and ``h``. A *trial* is ``N`` episodes of one task
one after another in one world: ``h`` starts at zero (or where an earlier trial of the task left it) and is never
reset between the trial's episodes, so what the policy learnt of the task in one episode is there in the next. The
worlds of a task run independent trials. All worlds of all tasks step in one batched call per control step: ``h`` is
``[n_tasks, envs_per_task, memory]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from agents.inner_loop import EpisodePolicy
from agents.normalizer import ObsNormalizer
from agents.policy import Params, bound_excursion, entropy, mlp, orthogonal
from agents.ppo import LossWeights
from envs.noise import action_noise
from envs.vec_env import TaskVecEnv


def memory_inputs(obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """What the memory reads at a step: ``[..., obs_dim + A + 2]`` from the observation ``[..., obs_dim]``, the previous
    action ``[..., A]`` (as the env applied it, clipped to ±1), the previous reward ``[...]`` and the episode-start flag
    ``[...]`` (1 where this step's observation is a new episode's first)."""
    return torch.cat([obs, action.clamp(-1, 1), reward[..., None], start[..., None].to(obs.dtype)], dim=-1)


class RecurrentActorCritic(nn.Module):
    """``forward(x [L, B, D], h [B, M]) -> (mean [L, B, A], log_std [A], value [L, B], memory [L, B, M])``: a GRU over
    the memory inputs ``x`` (:func:`memory_inputs`, normalized) from the state ``h``; ``memory[t]`` is the state after
    step ``t``, which the heads read with the step's observation."""

    def __init__(self, obs_dim: int, action_dim: int, memory: int = 128, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.obs_dim, self.memory = obs_dim, memory
        self.gru = nn.GRU(obs_dim + action_dim + 2, memory)
        self.pi = mlp([obs_dim + memory, *hidden, action_dim])
        self.vf = mlp([obs_dim + memory, *hidden, 1])
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    @property
    def input_dim(self) -> int:
        return self.gru.input_size

    def forward(
        self, x: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        memory, _ = self.gru(x, h[None])
        features = torch.cat([x[..., : self.obs_dim], memory], dim=-1)
        return self.pi(features), self.log_std, self.vf(features).squeeze(-1), memory


def init_recurrent_params(module: RecurrentActorCritic, seed: int, log_std: float = 0.0) -> Params:
    """Fresh parameters: orthogonal weights (each GRU gate's block with gain 1; the heads as
    :func:`agents.policy.init_params`: √2 in hidden layers, 0.01 for the action mean, 1 for the value), zero biases,
    every action's log-std ``log_std``."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, p in module.named_parameters():
        t = torch.zeros_like(p)
        if name.startswith("gru.weight"):  # [3M, in]: reset, update and new gates
            t = torch.cat([orthogonal(block.shape, 1.0, g) for block in t.chunk(3)])
        elif name.endswith("weight"):
            net, idx = name.split(".")[0], int(name.split(".")[1])
            last = idx == len(getattr(module, net)) - 1
            gain = (0.01 if net == "pi" else 1.0) if last else math.sqrt(2)
            t = orthogonal(t.shape, gain, g)
        params[name] = t
    params["log_std"] = torch.full_like(params["log_std"], log_std)
    return params


class Memory(NamedTuple):
    """What a memory learner knows of each task: its weights θ and each task's memory."""

    theta: Params
    """Unstacked parameters (the same for every task)."""
    hidden: torch.Tensor
    """``h [n, M]``: the memory where the task's last support episode left it."""
    action: torch.Tensor
    """``[n, A]``: the last action, the memory's next input."""
    reward: torch.Tensor
    """``[n]``: the last reward."""


class Trial(NamedTuple):
    """Trials of every world of ``n`` tasks, ``[T, n, E, ...]`` (``T`` = episodes × episode length)."""

    obs: torch.Tensor
    """Normalized memory inputs, ``[T, n, E, D]``."""
    raw_obs: torch.Tensor
    """The same before normalization, ``[T, n, E, D]``."""
    hidden: torch.Tensor
    """The memory before each step, ``[T, n, E, M]`` (where truncated backpropagation starts a chunk)."""
    actions: torch.Tensor
    """``[T, n, E, A]``."""
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    valid: torch.Tensor
    """Bool ``[T, n, E]``: the step belongs to the world's trial (a world whose episodes ended early waits, frozen)."""
    episode_ends: torch.Tensor
    """Bool ``[T, n, E]``: one of the world's episodes ends at this step (its trial's last included)."""
    ends: torch.Tensor
    """Bool ``[T, n, E]``: the world's trial ends at this step."""
    last: torch.Tensor
    """The memory, action and reward where each trial ended, ``[1, n, E, M + A + 1]``."""
    stats: dict[str, torch.Tensor]
    """Per task: ``return``, ``success``, ``length`` (means over every episode, ``[n]``) and ``episode_return``,
    ``episode_success``, ``episode_length`` of the trial's ``i``-th episode (means over worlds, ``[n, N]``)."""


@torch.no_grad()
def collect_trial(
    env: TaskVecEnv,
    module: RecurrentActorCritic,
    theta: Params,
    normalizer: ObsNormalizer,
    episodes: int,
    generator: torch.Generator,
    seed: int,
    start: Memory | None = None,
) -> Trial:
    """Reset ``env`` with ``seed`` and run a trial of ``episodes`` episodes in every world, each world's memory
    starting from its task's in ``start`` (zero when ``None``). The env runs ``episodes × episode_length`` steps;
    a world whose episodes end early waits, its memory frozen, its steps not ``valid``.

    As :func:`agents.rollout.collect`, a shard of a meta-batch draws the noise the whole batch would draw.
    """
    obs = env.reset(seed=seed)
    mine = slice(env.first_task, env.first_task + env.n_tasks)
    env.episode_stats()
    n, e, a_dim, m = env.n_tasks, env.envs_per_task, env.action_dim, module.memory
    steps = episodes * env.family.episode_length
    if start is None:
        h = torch.zeros(n, e, m)
        action, reward = torch.zeros(n, e, a_dim), torch.zeros(n, e)
    else:
        h = start.hidden[:, None].expand(n, e, m).clone()
        action, reward = start.action[:, None].expand(n, e, a_dim).clone(), start.reward[:, None].expand(n, e).clone()
    flag = torch.ones(n, e)
    buf = {
        "obs": torch.zeros(steps, n, e, module.input_dim),
        "raw_obs": torch.zeros(steps, n, e, module.input_dim),
        "hidden": torch.zeros(steps, n, e, m),
        "actions": torch.zeros(steps, n, e, a_dim),
        **{k: torch.zeros(steps, n, e) for k in ("log_probs", "values", "rewards")},
        **{k: torch.zeros(steps, n, e, dtype=torch.bool) for k in ("valid", "episode_ends", "ends")},
    }
    done_episodes = torch.zeros(n, e, dtype=torch.long)
    running = torch.zeros(n, e, dtype=torch.float64)
    per_episode = {k: torch.zeros(n, e, episodes, dtype=torch.float64) for k in ("return", "success", "length")}
    length = torch.zeros(n, e, dtype=torch.float64)
    last = torch.zeros(1, n, e, m + a_dim + 1)
    for t in range(steps):
        active = done_episodes < episodes
        raw = memory_inputs(obs, action, reward, flag)
        x = normalizer(raw)
        mean, log_std, value, memory = functional_call(module, theta, (x.reshape(1, n * e, -1), h.reshape(n * e, m)))
        mean, value, new_h = mean.reshape(n, e, a_dim), value.reshape(n, e), memory.reshape(n, e, m)
        noise = action_noise(generator, (n, e, a_dim), mine, env.total_tasks)
        act = mean + log_std.exp() * noise
        buf["obs"][t], buf["raw_obs"][t], buf["hidden"][t], buf["actions"][t] = x, raw, h, act
        buf["log_probs"][t] = _log_prob(act, mean, log_std)
        buf["values"][t], buf["valid"][t] = value, active
        obs, r, terminated, truncated, info = env.step(act)
        buf["rewards"][t] = r
        done = (terminated | truncated) & active
        buf["episode_ends"][t] = done
        running += r
        length += 1
        if done.any():
            index = done_episodes.clamp(max=episodes - 1)[..., None]
            for key, value_now in (("return", running), ("success", info["is_success"]), ("length", length)):
                per_episode[key].scatter_add_(2, index, torch.where(done, value_now.double(), 0.0)[..., None])
        finished = done & (done_episodes == episodes - 1)
        buf["ends"][t] = finished
        h = torch.where(active[..., None], new_h, h)
        action, reward = torch.where(active[..., None], act, action), torch.where(active, r, reward)
        last[0] = torch.where(finished[..., None], torch.cat([h, action, reward[..., None]], -1), last[0])
        done_episodes += done.long()
        running, length = (
            torch.where(terminated | truncated, 0.0, running),
            torch.where(terminated | truncated, 0.0, length),
        )
        flag = (terminated | truncated).float()
    stats = {}
    for key, value_of in per_episode.items():  # [n, E, N]
        stats[key], stats[f"episode_{key}"] = value_of.mean(dim=(1, 2)), value_of.mean(dim=1)
    env.episode_stats()
    return Trial(**buf, last=last, stats=stats)


def _log_prob(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density ``[...]`` of ``action, mean [..., A]`` under the shared ``log_std [A]``."""
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def recurrent_ppo_loss(
    module: RecurrentActorCritic,
    theta: Params,
    trial: Trial,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    chunk: int,
    w: LossWeights,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped PPO loss of the recurrent policy on some worlds' trials, backpropagating through its memory in
    chunks of ``chunk`` steps (truncated BPTT): each chunk starts from the memory the trial stored there, detached,
    as sb3-contrib's RecurrentPPO and CleanRL's LSTM PPO do.

    :param trial: ``[T, B, ...]``: the worlds of a minibatch, flattened (``B`` worlds, any tasks).
    :param advantages: ``[T, B]`` (normalized here over the valid steps); ``returns``: value targets ``[T, B]``.
    :return: the loss (a scalar) and its terms: ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``,
        ``clip_fraction``.
    """
    steps = trial.obs.shape[0]
    means, values = [], []
    for begin in range(0, steps, chunk):
        mean, log_std, value, _ = functional_call(
            module, theta, (trial.obs[begin : begin + chunk], trial.hidden[begin])
        )
        means.append(mean)
        values.append(value)
    mean, value, valid = torch.cat(means), torch.cat(values), trial.valid.to(advantages.dtype)
    count = valid.sum().clamp(min=1)
    log_ratio = _log_prob(trial.actions, mean, log_std) - trial.log_probs
    ratio = log_ratio.exp()
    adv_mean = (advantages * valid).sum() / count
    adv_std = (((advantages - adv_mean) * valid).square().sum() / count).sqrt()
    adv = (advantages - adv_mean) / (adv_std + 1e-8)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - w.clip, 1 + w.clip) * adv)
    policy_loss = -(surrogate * valid).sum() / count
    value_loss = ((value - returns).square() * valid).sum() / count
    ent = entropy(log_std[None])[0]
    bound_loss = (bound_excursion(mean, log_std.detach().exp()) * valid).sum() / count
    loss = policy_loss + w.vf_coef * value_loss - w.ent_coef * ent + w.bound_coef * bound_loss
    with torch.no_grad():
        terms = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": ent,
            "approx_kl": (((ratio - 1) - log_ratio) * valid).sum() / count,
            "clip_fraction": (((ratio - 1).abs() > w.clip).to(valid.dtype) * valid).sum() / count,
        }
    return loss, terms


@dataclass(frozen=True)
class MemoryAdaptation:
    """RL²'s answer to :class:`agents.inner_loop.Adaptation`: the state is each task's memory, and adapting is acting.

    A round's support episodes run one after another in one world per task, a trial carrying the memory; the
    evaluation episodes each start from a copy of the memory the support episodes left (and their own experience
    never reaches it). So after round k the memory has seen k × ``support_episodes`` episodes of the task, the
    number of episodes a gradient learner's k steps read, in as many env steps.
    """

    module: RecurrentActorCritic

    def start(self, theta: Params, n_tasks: int) -> Memory:
        a_dim = theta["log_std"].shape[0]
        zeros = torch.zeros(n_tasks, self.module.memory)
        return Memory(
            {k: v.detach() for k, v in theta.items()}, zeros, torch.zeros(n_tasks, a_dim), torch.zeros(n_tasks)
        )

    def support_layout(self, episodes: int, horizon: int) -> tuple[int, int]:
        """One after another: one world per task runs them as one trial."""
        return 1, episodes * horizon

    def collect(
        self, state: Memory, env: TaskVecEnv, normalizer: ObsNormalizer, steps: int, noise: torch.Generator, seed: int
    ) -> Trial:
        episodes = steps // env.family.episode_length
        return collect_trial(env, self.module, state.theta, normalizer, episodes, noise, seed, start=state)

    def adapt(self, state: Memory, support: Trial) -> tuple[Memory, dict[str, torch.Tensor]]:
        """The memory where each task's support trial ended (its one world)."""
        m, a_dim = self.module.memory, state.action.shape[1]
        last = support.last[0, :, 0]
        return Memory(state.theta, last[:, :m], last[:, m : m + a_dim], last[:, m + a_dim]), {}

    def policy(self, state: Memory, task: int, normalizer: ObsNormalizer) -> EpisodePolicy:
        """The mean action, the memory starting where the task's support episodes left it and carried through the
        episode."""
        module, theta = self.module, state.theta
        memory = {"h": state.hidden[task], "action": state.action[task], "reward": float(state.reward[task])}

        def act(obs: np.ndarray, reward: float) -> np.ndarray:
            start = "started" not in memory
            previous = memory["reward"] if start else reward  # an episode's first input carries the last one's reward
            raw = memory_inputs(
                torch.as_tensor(np.asarray(obs), dtype=torch.float32),
                memory["action"],
                torch.tensor(previous, dtype=torch.float32),
                torch.tensor(float(start)),
            )
            with torch.no_grad():
                mean, _, _, h = functional_call(module, theta, (normalizer(raw)[None, None], memory["h"][None]))
            memory.update(h=h[0, 0], action=mean[0, 0], started=True)
            return mean[0, 0].numpy()

        return act

    def mlp_policy(self, state: Memory, task: int, normalizer: ObsNormalizer) -> tuple[Params, ObsNormalizer]:
        raise ValueError(
            "algo='rl2' has no MLP policy to hand to SB3: its policy keeps a memory (a GRU) across episodes, which "
            "SB3's MlpPolicy cannot hold, and sb3-contrib's RecurrentPPO resets its LSTM at every episode start"
        )
