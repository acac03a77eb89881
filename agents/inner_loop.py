"""Adaptation: θ plus a task's support experience → the policy that acts on that task now.

Every learner answers that one question, for all tasks of a batch at once, through :class:`Adaptation`: a state
to start each task from, how a round's support episodes are laid out (side by side in parallel worlds, or one after
another in one world carrying a memory), a way to act (collect rollouts) with a state, and a way to fold a task's
support rollout into its state. Training's outer loops, evaluation's adaptation curve, the Ray workers and the SB3
export all ask this interface, never the kind of learner behind it.

:class:`InnerLoop` is the gradient learners' answer (MAML, FOMAML, Meta-SGD, Reptile, CAVIA and the baselines
adapted like them): the state is task-stacked policy parameters φ, and adapting takes PPO steps on the support
rollout. A learner whose adaptation is not a gradient step (a recurrent policy whose state is its memory, a task
embedding inferred from support transitions) implements the same three methods with a state of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import torch

from agents.gae import gae
from agents.linear_baseline import linear_values
from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, mean_action
from agents.ppo import LossWeights, ppo_loss
from agents.rollout import Rollout, collect
from envs.vec_env import TaskVecEnv

CRITICS = ("value", "linear")

State = TypeVar("State")
EpisodePolicy = Callable[[np.ndarray, float], np.ndarray]
"""``act(obs [obs_dim], reward) -> action [A]``, called at every step of one episode in order with the previous step's
reward (0 at the first)."""


class Adaptation(Protocol[State]):
    """How a learner adapts to ``n`` tasks at once; ``State`` is what it knows of each task so far."""

    def start(self, theta: Params, n_tasks: int) -> State:
        """Each task's state before any support experience, from the meta-learned ``theta`` (unstacked)."""
        ...

    def support_layout(self, episodes: int, horizon: int) -> tuple[int, int]:
        """How ``episodes`` support episodes of ``horizon`` steps run: ``(worlds per task, control steps)``."""
        ...

    def collect(
        self,
        state: State,
        env: TaskVecEnv,
        normalizer: ObsNormalizer,
        steps: int,
        noise: torch.Generator,
        seed: int,
    ) -> Rollout:
        """``steps`` control steps of every task's policy in ``state`` in ``env`` (reset with ``seed``)."""
        ...

    def adapt(self, state: State, support: Rollout) -> tuple[State, dict[str, torch.Tensor]]:
        """Each task's state after its support rollout ``[T, n, E, ...]``, and diagnostics (each ``[n]``)."""
        ...

    def policy(self, state: State, task: int, normalizer: ObsNormalizer) -> EpisodePolicy:
        """Task ``task``'s deterministic policy for one episode (the mean action), acting on single observations."""
        ...

    def mlp_policy(self, state: State, task: int, normalizer: ObsNormalizer) -> tuple[Params, ObsNormalizer]:
        """Task ``task``'s adapted policy as :class:`agents.policy.ActorCritic` parameters and the normalizer of its
        observation (what SB3's ``MlpPolicy`` can hold), or a one-line ``ValueError`` saying why it has none."""
        ...


def advantages(batch: Rollout, critic: str, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and value targets of a rollout, ``[T, n, E]`` each, baselined by ``critic``: ``value`` (the
    policy's value head as collected) or ``linear`` (each task's own :func:`agents.linear_baseline.linear_values`)."""
    values, following = batch.values, batch.next_values
    if critic == "linear":
        values, following = linear_values(batch.obs, batch.rewards, batch.episode_ends, gamma)
    return gae(batch.rewards, values, following, batch.episode_ends, gamma, gae_lambda)


@dataclass(frozen=True)
class InnerLoop:
    """Gradient adaptation: ``steps`` PPO steps per task, ``φ ← φ − α ⊙ ∇φ L_PPO(φ; support)``, all tasks at once.

    The state is task-stacked parameters ``[n, *shape]``. Tasks are independent, so the gradient of the summed loss
    with respect to the stacked parameters is every task's own gradient.
    """

    module: ActorCritic
    loss: LossWeights
    critic: str
    """advantage baseline: ``value`` or ``linear`` (:func:`advantages`)"""
    gamma: float
    gae_lambda: float
    steps: int
    """PPO steps per call of :meth:`adapt`"""
    rates: Mapping[str, float | torch.Tensor]
    """The parameters that adapt and the step size of each: a number, or a tensor shaped like the parameter
    (Meta-SGD's learned rates). Parameters left out stay fixed (CAVIA adapts its context alone)."""
    second_order: bool = False
    """Keep the steps differentiable (``create_graph``): the adapted φ's gradient with respect to θ then includes
    the inner gradients' own dependence on θ (MAML, Meta-SGD); without it, first order (FOMAML)."""

    def __post_init__(self) -> None:
        if self.critic not in CRITICS:
            raise ValueError(f"critic={self.critic!r} is not allowed: expected one of {', '.join(CRITICS)}")

    def advantages(self, batch: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`advantages` with this loop's critic, γ and λ."""
        return advantages(batch, self.critic, self.gamma, self.gae_lambda)

    def start(self, theta: Params, n_tasks: int) -> Params:
        """``n_tasks`` copies of ``theta``, ``[n, *shape]`` each, detached from it."""
        return {k: v.detach().unsqueeze(0).repeat(n_tasks, *([1] * v.dim())) for k, v in theta.items()}

    def support_layout(self, episodes: int, horizon: int) -> tuple[int, int]:
        """Side by side: one world per episode; a gradient step reads them all at once."""
        return episodes, horizon

    def collect(
        self,
        state: Params,
        env: TaskVecEnv,
        normalizer: ObsNormalizer,
        steps: int,
        noise: torch.Generator,
        seed: int,
    ) -> Rollout:
        """:func:`agents.rollout.collect` with each task's parameters (acting never needs their graph)."""
        return collect(env, self.module, {k: v.detach() for k, v in state.items()}, normalizer, steps, noise, seed)

    def adapt(self, state: Params, support: Rollout) -> tuple[Params, dict[str, torch.Tensor]]:
        """φ after :attr:`steps` PPO steps from ``state`` on each task's support rollout.

        φ is differentiable with respect to whatever ``state`` was (θ, stacked with :func:`agents.policy.stack`,
        when an outer loop trains through it); from a detached ``state`` it is detached.

        :param state: task-stacked starting parameters ``[n, *shape]``.
        :param support: the rollout ``[T, n, E, ...]`` collected with ``state``.
        :return: φ ``[n, *shape]`` and diagnostics, each ``[n]``: the loss terms θ starts from (``loss``,
            ``policy_loss``, ``value_loss``, ``entropy``) and how far adaptation moved each policy on the support
            data (``approx_kl`` from the collecting policy, ``clip_fraction``).
        """
        tracked = any(v.requires_grad for v in state.values())
        adv, ret = self.advantages(support)
        phi = {
            k: v if v.requires_grad or k not in self.rates else v.detach().requires_grad_(True)
            for k, v in state.items()
        }
        first: dict[str, torch.Tensor] = {}
        for _ in range(self.steps):
            loss, terms = ppo_loss(self.module, phi, support, adv, ret, self.loss)
            grads = torch.autograd.grad(loss.sum(), [phi[k] for k in self.rates], create_graph=self.second_order)
            phi = {**phi, **{k: phi[k] - rate * g for (k, rate), g in zip(self.rates.items(), grads, strict=True)}}
            first = first or {"loss": loss.detach(), **{k: terms[k] for k in ("policy_loss", "value_loss", "entropy")}}
        with torch.no_grad():
            moved = ppo_loss(self.module, {k: v.detach() for k, v in phi.items()}, support, adv, ret, self.loss)[1]
        diagnostics = {**first, "approx_kl": moved["approx_kl"], "clip_fraction": moved["clip_fraction"]}
        return (phi if tracked else {k: v.detach() for k, v in phi.items()}), diagnostics

    def policy(self, state: Params, task: int, normalizer: ObsNormalizer) -> EpisodePolicy:
        params = {k: v[task] for k, v in state.items()}
        return lambda obs, reward: mean_action(params, normalizer, obs)

    def mlp_policy(self, state: Params, task: int, normalizer: ObsNormalizer) -> tuple[Params, ObsNormalizer]:
        return {k: v[task] for k, v in state.items()}, normalizer
