"""A context learner (PEARL-style, Rakelly et al. 2019, trained on-policy with PPO): the policy reads a task embedding
``z`` that an encoder infers from the task's transitions (:mod:`agents.context`).

Each iteration every world of every task runs ``trial_episodes`` episodes; a task's posterior over ``z`` takes in the
transitions of all its worlds as they happen, and each world acts with a draw from it (:mod:`agents.context`). The
outer step is PPO with ``z`` re-inferred from the same evidence (reparameterized: the episode's ``ε`` kept), so the
policy and value losses train the encoder through ``z`` (end to end; PEARL trains its encoder through the critic
alone), plus two terms of the encoder's own:

- ``kl_coef`` · KL(posterior of each task's whole trial ‖ N(0, I)): PEARL's information bottleneck;
- ``task_loss_coef`` · the squared error of predicting the task's scaled parameters from the posterior mean after
  every step (Humplik et al. 2019, "meta reinforcement learning as task inference"). Privileged: the parameters of
  *train* tasks are read here, in training, and nowhere else; the policy never sees them, and at test time the
  encoder sees only transitions.

Minibatches are of whole tasks: a task's posterior pools its worlds.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from agents.context import (
    ContextActorCritic,
    ContextAdaptation,
    ContextRollout,
    factors,
    init_context_params,
    kl_to_prior,
    posterior,
    submodule_params,
)
from agents.gae import gae
from agents.inner_loop import Adaptation
from agents.normalizer import ObsNormalizer
from agents.policy import Params, bound_excursion, entropy
from envs.family import Family
from meta.config import loss_weights
from meta.in_context import InContextLearner


class ContextLearner(InContextLearner):
    @staticmethod
    def network(cfg, family: Family) -> tuple[ContextActorCritic, Params, ObsNormalizer]:
        """An encoder, policy and value of ``cfg.hidden``, ``z`` of ``cfg.latent``; the normalizer tracks the
        observation and the reward (the encoder reads both)."""
        module = ContextActorCritic(family.obs_dim, family.action_dim, len(family.params), cfg.latent, cfg.hidden)
        theta = init_context_params(module, cfg.seed, cfg.log_std_init)
        return module, theta, ObsNormalizer(family.obs_dim + 1, cfg.normalize_obs)

    def adaptation(self) -> Adaptation:
        return ContextAdaptation(self.module)

    def advantages(self, rollout: ContextRollout) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE within each episode (``z`` is the episode's; it bootstraps a cut-off one), baselined by ``critic``."""
        c, everywhere = self.cfg, torch.ones_like(rollout.rewards, dtype=torch.bool)
        rewards = self.scaled(rollout.rewards, everywhere)
        ends = rollout.episode_ends
        values, following = self.baseline(rollout.obs, rewards, ends, rollout.values, rollout.next_values)
        return gae(rewards, values, following, ends, c.gamma, c.gae_lambda)

    def loss(
        self, rollout: ContextRollout, advantages: torch.Tensor, returns: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """PPO on the policy and value with ``z`` re-inferred from the evidence (with the entropy bonus and the bound
        loss of :func:`meta.config.loss_weights`, as every learner's), the KL to the prior and the task-inference
        loss, for the tasks of ``rollout`` ``[T, n, E, ...]``."""
        c, w, theta, z_dim = self.cfg, loss_weights(self.cfg), self.theta, self.module.latent
        precision, weighted = factors(self.module, theta, rollout.transitions)  # [T, n, E, Z]
        start = rollout.start[0, :, 0]  # [n, 2Z]
        # The evidence before each step (exclusive cumulative sums over time, pooled over the task's worlds)
        before_p = torch.cumsum(precision.sum(2), 0) - precision.sum(2) + start[None, :, :z_dim]
        before_w = torch.cumsum(weighted.sum(2), 0) - weighted.sum(2) + start[None, :, z_dim:]
        mean, std = posterior(before_p, before_w)  # [T, n, Z]
        z = mean[:, :, None] + std[:, :, None] * rollout.noise  # what each world acted with, now differentiable
        action_mean, log_std, value = functional_call(self.module, theta, (rollout.obs, z))
        log_prob = (-0.5 * ((rollout.actions - action_mean) / log_std.exp()).square() - log_std).sum(-1)
        log_prob = log_prob - 0.5 * rollout.actions.shape[-1] * torch.log(torch.tensor(2 * torch.pi))
        log_ratio = log_prob - rollout.log_probs
        ratio = log_ratio.exp()
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - w.clip, 1 + w.clip) * adv).mean()
        value_loss = (value - returns).square().mean()
        ent = entropy(log_std[None])[0]
        bound_loss = bound_excursion(action_mean, log_std.detach().exp()).mean()
        final_mean, final_std = posterior(before_p[-1] + precision[-1].sum(1), before_w[-1] + weighted[-1].sum(1))
        kl = kl_to_prior(final_mean, final_std).mean()
        predicted = functional_call(self.module.task_head, submodule_params(theta, "task_head"), (mean,))
        task_loss = (predicted - rollout.task[0, :, 0][None]).square().mean()
        loss = policy_loss + w.vf_coef * value_loss - w.ent_coef * ent + w.bound_coef * bound_loss
        loss = loss + c.kl_coef * kl + c.task_loss_coef * task_loss
        with torch.no_grad():
            terms = {
                "policy_loss": policy_loss,
                "value_loss": value_loss,
                "entropy": ent,
                "kl": kl,
                "task_loss": task_loss,
                "approx_kl": ((ratio - 1) - log_ratio).mean(),
                "clip_fraction": ((ratio - 1).abs() > w.clip).float().mean(),
            }
        return loss, terms
