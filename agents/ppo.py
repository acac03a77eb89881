"""The PPO objective and the inner loop that adapts every task's policy at once."""

from __future__ import annotations

import torch

from agents.policy import ActorCritic, Params, entropy, evaluate, log_prob
from agents.rollout import Rollout


def ppo_loss(
    module: ActorCritic,
    params: Params,
    batch: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    clip: float,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped-surrogate PPO loss of each task's policy on its own data.

    :param params: task-stacked parameters ``[n, *shape]``.
    :param batch: rollout, ``[T, n, E, ...]``; ``batch.log_probs`` are the behaviour policy's.
    :param advantages: ``[T, n, E]``, normalized per task here (mean 0, std 1 over ``T × E``).
    :param returns: value targets ``[T, n, E]``.
    :return: loss per task ``[n]`` = policy loss + ``vf_coef`` · value loss (mean squared error over the variance of
        the task's returns) − ``ent_coef`` · entropy, and those
        terms (each ``[n]``) plus the approximate KL to the behaviour policy and the clipped fraction.
    """
    mean, log_std, value = evaluate(module, params, batch.obs.transpose(0, 1))
    new_lp = log_prob(batch.actions.transpose(0, 1), mean, log_std)  # [n, T, E]
    log_ratio = new_lp - batch.log_probs.transpose(0, 1)
    ratio = log_ratio.exp()
    adv = advantages.transpose(0, 1)
    adv = (adv - adv.mean(dim=(1, 2), keepdim=True)) / (adv.std(dim=(1, 2), keepdim=True) + 1e-8)
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    policy_loss = -surrogate.mean(dim=(1, 2))
    # Scaled by each task's return variance: the minimizer is unchanged, but the gradient becomes commensurate
    # with the normalized policy loss whatever the reward scale, so one inner step size suits both heads.
    ret = returns.transpose(0, 1)
    value_loss = (value - ret).square().mean(dim=(1, 2)) / ret.var(dim=(1, 2)).clamp(min=1e-2)
    ent = entropy(log_std)
    loss = policy_loss + vf_coef * value_loss - ent_coef * ent
    with torch.no_grad():
        terms = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": ent,
            "approx_kl": ((ratio - 1) - log_ratio).mean(dim=(1, 2)),
            "clip_fraction": ((ratio - 1).abs() > clip).float().mean(dim=(1, 2)),
        }
    return loss, terms


def adapt(
    module: ActorCritic,
    params: Params,
    batch: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    steps: int,
    lr: float | Params,
    create_graph: bool,
    clip: float,
    vf_coef: float,
    ent_coef: float,
) -> tuple[Params, list[dict[str, torch.Tensor]]]:
    """``steps`` gradient steps of the PPO loss for every task at once: ``φ ← φ − lr · ∇φ L(φ)``.

    Tasks are independent, so the gradient of the summed loss with respect to the task-stacked parameters is
    every task's own gradient. With ``create_graph`` the steps stay differentiable (second-order MAML).

    :param params: task-stacked starting parameters ``[n, *shape]`` (usually :func:`agents.policy.stack` of θ).
    :param lr: a step size, or one per parameter entry (Meta-SGD), shaped like θ's entries.
    :return: the adapted parameters ``[n, *shape]`` and the loss terms of each step (each ``[n]``).
    """
    phi, history = params, []
    for _ in range(steps):
        loss, terms = ppo_loss(module, phi, batch, advantages, returns, clip, vf_coef, ent_coef)
        grads = torch.autograd.grad(loss.sum(), list(phi.values()), create_graph=create_graph)
        phi = {k: p - (lr[k] if isinstance(lr, dict) else lr) * g for (k, p), g in zip(phi.items(), grads, strict=True)}
        history.append({"loss": loss.detach(), **terms})
    return phi, history
