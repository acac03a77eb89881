"""RL² (Duan et al. 2016; Wang et al. 2016): a recurrent policy trained with PPO over whole trials, so that what it
keeps in its memory of a task's earlier episodes makes its later ones better (:mod:`agents.recurrent`).

A trial is one long episode for the advantage estimate: GAE does not stop at the boundaries between its episodes, so
an action that finds out the task is credited with what that knowledge earns later (``gae_across_episodes``; off,
advantages stop at each episode's end: on grasp only then does RL² learn to lift, docs/training.md).
Backpropagation runs through the memory in chunks of ``bptt`` steps (the whole trial by default).
"""

from __future__ import annotations

import torch

from agents.gae import gae
from agents.inner_loop import Adaptation
from agents.normalizer import ObsNormalizer
from agents.policy import Params
from agents.recurrent import MemoryAdaptation, RecurrentActorCritic, Trial, init_recurrent_params, recurrent_ppo_loss
from envs.family import Family
from meta.config import loss_weights
from meta.in_context import InContextLearner


class RL2(InContextLearner):
    @staticmethod
    def network(cfg, family: Family) -> tuple[RecurrentActorCritic, Params, ObsNormalizer]:
        """A GRU memory of ``cfg.memory`` units and heads of ``cfg.hidden``; the normalizer is of the memory's
        inputs (observation, previous action, previous reward, episode start)."""
        module = RecurrentActorCritic(family.obs_dim, family.action_dim, cfg.memory, cfg.hidden)
        theta = init_recurrent_params(module, cfg.seed, cfg.log_std_init)
        return module, theta, ObsNormalizer(module.input_dim, cfg.normalize_obs)

    def adaptation(self) -> Adaptation:
        return MemoryAdaptation(self.module)

    def advantages(self, trial: Trial) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE over each world's whole trial: the next step's value across episode boundaries, 0 after the trial (or,
        without ``gae_across_episodes``, 0 after each episode); baselined by ``critic`` (a linear fit reads the step
        within the span GAE runs over as its time)."""
        rewards = self.scaled(trial.rewards, trial.valid)
        ends = trial.ends if self.cfg.gae_across_episodes else trial.episode_ends
        following = torch.cat([trial.values[1:], torch.zeros_like(trial.values[:1])]) * ~ends
        values, following = self.baseline(trial.obs, rewards, ends, trial.values, following, trial.valid)
        return gae(rewards, values, following, ends, self.cfg.gamma, self.cfg.gae_lambda)

    def loss(self, trial: Trial, advantages: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, dict]:
        worlds = Trial(*(v.flatten(1, 2) if torch.is_tensor(v) else v for v in trial))  # [T, n·E, …]
        chunk = self.cfg.bptt or trial.rewards.shape[0]
        return recurrent_ppo_loss(
            self.module, self.theta, worlds, advantages.flatten(1), returns.flatten(1), chunk, loss_weights(self.cfg)
        )
