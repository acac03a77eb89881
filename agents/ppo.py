"""The PPO objective of every task's policy on its own data, batched over the tasks of a meta-batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.policy import ActorCritic, Params, bound_excursion, entropy, evaluate, log_prob
from agents.rollout import Rollout


@dataclass(frozen=True)
class LossWeights:
    """The PPO loss's settings (:class:`meta.config.TrainConfig`'s fields of the same names)."""

    clip: float
    """ratio clip"""
    vf_coef: float
    """weight of the value loss"""
    ent_coef: float
    """weight of the entropy bonus"""
    bound_coef: float
    """weight of the bound loss"""


def ppo_loss(
    module: ActorCritic,
    params: Params,
    batch: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    w: LossWeights,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped-surrogate PPO loss of each task's policy on its own data.

    :param params: task-stacked parameters ``[n, *shape]``.
    :param batch: rollout, ``[T, n, E, ...]``; ``batch.log_probs`` are the behaviour policy's.
    :param advantages: ``[T, n, E]``, normalized per task here (mean 0, std 1 over ``T × E``).
    :param returns: value targets ``[T, n, E]``.
    :return: loss per task ``[n]`` = policy loss + ``w.vf_coef`` · value loss (mean squared error over the variance
        of the task's returns) − ``w.ent_coef`` · entropy + ``w.bound_coef`` · bound loss (the mean squared
        excursion of the action mean more than 2σ past the env's action bounds ±1), and those terms (each ``[n]``)
        plus the approximate KL from the behaviour policy (``E[(r − 1) − log r]``, Schulman's unbiased estimator)
        and the fraction of samples whose ratio ``r`` lies outside the clip range.
    """
    mean, log_std, value = evaluate(module, params, batch.obs.transpose(0, 1))
    new_lp = log_prob(batch.actions.transpose(0, 1), mean, log_std)  # [n, T, E]
    log_ratio = new_lp - batch.log_probs.transpose(0, 1)
    ratio = log_ratio.exp()
    adv = advantages.transpose(0, 1)
    adv = (adv - adv.mean(dim=(1, 2), keepdim=True)) / (adv.std(dim=(1, 2), keepdim=True) + 1e-8)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - w.clip, 1 + w.clip) * adv)
    policy_loss = -surrogate.mean(dim=(1, 2))
    # Scaled by each task's return variance: the minimizer is unchanged, but the gradient becomes commensurate
    # with the normalized policy loss whatever the reward scale, so one inner step size suits both heads.
    ret = returns.transpose(0, 1)
    value_loss = (value - ret).square().mean(dim=(1, 2)) / ret.var(dim=(1, 2)).clamp(min=1e-2)
    ent = entropy(log_std)
    sigma = log_std.detach().exp()[:, None, None, :]  # [n, 1, 1, A] against the mean's [n, T, E, A]
    bound_loss = bound_excursion(mean, sigma).mean(dim=(1, 2))
    loss = policy_loss + w.vf_coef * value_loss - w.ent_coef * ent + w.bound_coef * bound_loss
    with torch.no_grad():
        terms = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": ent,
            "bound_loss": bound_loss,
            "approx_kl": ((ratio - 1) - log_ratio).mean(dim=(1, 2)),
            "clip_fraction": ((ratio - 1).abs() > w.clip).float().mean(dim=(1, 2)),
        }
    return loss, terms
