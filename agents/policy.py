"""Gaussian actor-critic whose parameters are an explicit dict of tensors.

The module only defines the computation; parameters live outside it, in a dict, and are applied with
``torch.func.functional_call``. A meta-batch holds one set per task stacked on a leading task axis, and
:func:`evaluate` runs all tasks' policies in one ``vmap``-ed call. The layout follows SB3's ``MlpPolicy``
(separate tanh MLPs for policy and value, a state-independent log-std), so a policy can be handed to SB3.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from agents.normalizer import ObsNormalizer

Params = dict[str, torch.Tensor]


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """``forward(obs [..., obs_dim]) -> (mean [..., A], log_std [A], value [...])``.

    With ``context_dim`` > 0 the policy MLP also reads a context vector, parameter ``context [context_dim]``
    (zero at initialization), beside the observation: CAVIA's task context (Zintgraf et al. 2019), the only
    parameter its inner loop adapts.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (64, 64), context_dim: int = 0) -> None:
        super().__init__()
        self.pi = mlp([obs_dim + context_dim, *hidden, action_dim])
        self.vf = mlp([obs_dim, *hidden, 1])
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        if context_dim:
            self.context = nn.Parameter(torch.zeros(context_dim))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = obs
        if hasattr(self, "context"):
            x = torch.cat([obs, self.context.expand(*obs.shape[:-1], -1)], -1)
        return self.pi(x), self.log_std, self.vf(obs).squeeze(-1)


def init_params(module: ActorCritic, seed: int, log_std: float = 0.0) -> Params:
    """Fresh parameters: orthogonal weights (gain √2 in hidden layers, 0.01 for the action mean, 1 for the value,
    as in SB3 and CleanRL), zero biases, every action's log-std ``log_std``."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, p in module.named_parameters():
        t = torch.zeros_like(p)
        if name.endswith("weight"):
            net, idx = name.split(".")[0], int(name.split(".")[1])
            last = idx == len(getattr(module, net)) - 1
            gain = (0.01 if net == "pi" else 1.0) if last else math.sqrt(2)
            t = orthogonal(t.shape, gain, g)
        params[name] = t
    params["log_std"] = torch.full_like(params["log_std"], log_std)
    return params


def fold_context(params: Params) -> Params:
    """The same policy without a context input: ``W [x; c] + b = W_x x + (b + W_c c)`` for the policy MLP's first
    layer. Unbatched parameters; those without a ``context`` are returned as they are."""
    if "context" not in params:
        return params
    rest = {k: v for k, v in params.items() if k != "context"}
    context, weight = params["context"], params["pi.0.weight"]
    obs_dim = weight.shape[1] - context.shape[0]
    rest["pi.0.weight"] = weight[:, :obs_dim]
    rest["pi.0.bias"] = params["pi.0.bias"] + weight[:, obs_dim:] @ context
    return rest


def orthogonal(shape: torch.Size, gain: float, g: torch.Generator) -> torch.Tensor:
    """A ``[rows, cols]`` matrix with orthonormal rows or columns times ``gain`` (Saxe et al. 2014), from ``g``."""
    rows, cols = shape
    a = torch.randn(max(rows, cols), min(rows, cols), generator=g)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    return gain * (q if rows >= cols else q.T)


def stack(params: Params, n: int) -> Params:
    """``n`` copies of ``params`` on a leading task axis: ``[n, *shape]`` each (views of ``params``: gradients
    of anything computed from them flow back to ``params``)."""
    return {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in params.items()}


def evaluate(module: ActorCritic, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every task's policy on its own observations, in one call.

    :param params: task-stacked parameters, each ``[n, *shape]``.
    :param obs: ``[n, ..., obs_dim]``.
    :return: ``mean [n, ..., A]``, ``log_std [n, A]``, ``value [n, ...]``.
    """
    return vmap(lambda p, o: functional_call(module, p, (o,)))(params, obs)


def log_prob(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density: ``action, mean [n, ..., A]``, ``log_std [n, A]`` → ``[n, ...]``."""
    log_std = log_std.reshape(log_std.shape[0], *([1] * (mean.dim() - 2)), -1)
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of the diagonal Gaussian per task: ``log_std [n, A]`` → ``[n]``."""
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


def bound_excursion(mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The squared excursion of the action mean more than 2σ past the env's action bounds ±1, summed over actions:
    ``mean [..., A]``, ``sigma`` broadcastable to it → ``[...]``.

    The env clips actions to ±1: once the mean is more than a few σ past a bound, every sampled action is clipped
    alike and the policy can no longer find out that less would be better. Penalized beyond 1 + 2σ, about 2 % of
    samples stay inside; a saturated action (a firm grip) stays reachable. ``sigma`` is taken as given (detach it):
    the loss moves the mean back, not the noise up."""
    return (mean.abs() - 1 - 2 * sigma).clamp(min=0).square().sum(-1)


def hidden_of(params: Params) -> tuple[int, ...]:
    """Hidden widths of the ``pi`` network in ``params`` (its Linear layers are ``pi.0``, ``pi.2``, …)."""
    n = sum(1 for k in params if k.startswith("pi.") and k.endswith(".weight"))
    if n == 0 or "log_std" not in params:
        raise ValueError("params lacks pi.*.weight or log_std: expected an ActorCritic parameter dict")
    return tuple(int(params[f"pi.{2 * i}.weight"].shape[0]) for i in range(n - 1))


def mean_action(params: Params, normalizer: ObsNormalizer, obs: np.ndarray) -> np.ndarray:
    """robometa's deterministic action (the Gaussian mean, unclipped) for observations.

    :param params: an unbatched ``ActorCritic`` parameter dict.
    :param normalizer: the observation normalizer trained with ``params``.
    :param obs: ``[obs_dim]`` (or ``[..., obs_dim]``).
    :return: ``[action_dim]`` (or ``[..., action_dim]``), float32.
    """
    params = fold_context(params)
    hidden = hidden_of(params)
    obs_dim, action_dim = params["pi.0.weight"].shape[1], params["log_std"].shape[0]
    obs_t = torch.as_tensor(np.asarray(obs), dtype=params["pi.0.weight"].dtype)
    if obs_t.shape[-1:] != (obs_dim,):
        raise ValueError(f"obs has shape {tuple(obs_t.shape)}: expected [..., {obs_dim}]")
    module = ActorCritic(obs_dim, action_dim, hidden)
    with torch.no_grad():
        mean, _, _ = functional_call(module, params, (normalizer(obs_t),))
    return mean.numpy().astype(np.float32)
