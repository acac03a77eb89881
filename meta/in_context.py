"""The outer loop of learners that adapt without a gradient step (RL²'s memory, a context learner's task posterior):
PPO over whole trials.

Each iteration every world of every task of the meta-batch runs one trial of ``trial_episodes`` episodes, acting
with what the learner's adaptation knows of the task so far (:meth:`agents.inner_loop.Adaptation.collect` from its
start); ``rollout/pre_*`` is the trials' first episode, ``rollout/post_*`` their last. θ then takes ``epochs`` PPO
passes over the trials in ``minibatches`` minibatches of whole tasks. Rewards are scaled by a running estimate of the
standard deviation of the discounted return (as SB3's ``VecNormalize`` does), so one value-loss weight suits every
family's reward scale. Advantages are baselined by the value head (the default: it reads the memory or the
posterior) or by each task's linear fit (``critic`` linear: no value estimate that lags the policy biases them).
"""

from __future__ import annotations

import abc

import torch

from agents.gae import discounted_returns
from agents.linear_baseline import linear_values
from agents.normalizer import ObsNormalizer, moments
from agents.policy import Params
from envs.vec_env import TaskVecEnv
from meta.outer_loop import Contribution, Gathered, OuterLoop

EPISODE_METRICS = ("return", "success", "length")


class InContextLearner(OuterLoop):
    def __init__(self, module: torch.nn.Module, theta: Params, cfg) -> None:
        super().__init__(module, theta, cfg)
        self.optimizer = torch.optim.Adam(self.meta_parameters(), lr=cfg.outer_lr)
        self.returns = ObsNormalizer(1)
        """Running statistics of the discounted return, whose standard deviation scales the rewards."""
        self.updates = 0
        """Outer steps taken: with the seed, what orders the minibatches (so a resumed run repeats them)."""

    def gather(
        self, env: TaskVecEnv, normalizer: ObsNormalizer, noise: torch.Generator, seeds: tuple[int, int]
    ) -> Gathered:
        """One trial per world, from what the learner knows of a task before any experience of it."""
        adaptation = self.adaptation()
        start = adaptation.start(self.theta, env.n_tasks)
        steps = self.cfg.trial_episodes * env.family.episode_length
        rollout = adaptation.collect(start, env, normalizer, steps, noise, seeds[0])
        s = rollout.stats
        pre = {k: s[f"episode_{k}"][:, 0] for k in EPISODE_METRICS}
        post = {k: s[f"episode_{k}"][:, -1] for k in EPISODE_METRICS}
        raw = rollout.raw_obs.flatten(0, -2)
        return Gathered(pre, post, {}, Contribution(None, {}, (rollout,)), raw, rollout.rewards.numel())

    def apply(self, total: Contribution, n_tasks: int) -> dict[str, float]:
        c, (rollout,) = self.cfg, total.rollouts
        advantages, returns = self.advantages(rollout)
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + self.updates)
        history = []
        for _ in range(c.epochs):
            for batch in torch.randperm(n_tasks, generator=g).chunk(min(c.minibatches, n_tasks)):
                part = type(rollout)(
                    *(v[:, batch] if torch.is_tensor(v) else {k: x[batch] for k, x in v.items()} for v in rollout)
                )
                loss, terms = self.loss(part, advantages[:, batch], returns[:, batch])
                self.optimizer.zero_grad()
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.meta_parameters(), c.max_grad_norm)
                self.optimizer.step()
                history.append({"loss": loss.detach(), **terms, "grad_norm": grad_norm})
        self.updates += 1
        means = {k: torch.stack([h[k] for h in history]).mean().item() for k in history[0]}
        return {**{f"outer/{k}": v for k, v in means.items()}, "outer/reward_scale": self.reward_scale()}

    def scaled(self, rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``rewards [T, n, E]`` over the running standard deviation of the discounted return, after folding this
        rollout's returns (where ``valid``) into its statistics."""
        self.returns.merge(*moments(discounted_returns(rewards, valid, self.cfg.gamma)[valid][:, None]))
        return rewards / self.reward_scale()

    def baseline(
        self,
        obs: torch.Tensor,
        rewards: torch.Tensor,
        ends: torch.Tensor,
        values: torch.Tensor,
        following: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The values ``[T, n, E]`` and next-step values GAE baselines a rollout's (scaled) ``rewards`` with: the value
        head's as collected (``critic`` value), or each task's least-squares fit to its own returns within the
        episodes ``ends`` closes, over its ``valid`` steps (``critic`` linear,
        :func:`agents.linear_baseline.linear_values` of ``obs``)."""
        if self.cfg.resolved_critic == "linear":
            return linear_values(obs, rewards, ends, self.cfg.gamma, valid)
        return values, following

    def reward_scale(self) -> float:
        return float(self.returns.var.sqrt().clamp(min=1e-4))

    @abc.abstractmethod
    def advantages(self, rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantages and value targets ``[T, n, E]`` of a rollout (rewards :meth:`scaled`)."""

    @abc.abstractmethod
    def loss(self, rollout, advantages: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The loss (a scalar) on some tasks' rollouts ``[T, n, E, ...]`` and its terms (scalars)."""

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "returns": self.returns.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.returns.load_state_dict(state["returns"])
        self.updates = int(state["updates"])
