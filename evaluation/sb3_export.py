"""Hand a robometa policy to Stable-Baselines3: an ``ActorCritic`` parameter dict as a ``PPO`` zip.

SB3's ``MlpPolicy`` with ``net_arch=dict(pi=hidden, vf=hidden)`` and Tanh activations has the same layout as
:class:`agents.policy.ActorCritic` (separate policy and value MLPs, a state-independent ``log_std``), so the export
is a renaming of parameters::

    pi.{2i}          -> mlp_extractor.policy_net.{2i}     (i < len(hidden))
    pi.{2 len(hidden)} -> action_net
    vf.{2i}          -> mlp_extractor.value_net.{2i}
    vf.{2 len(hidden)} -> value_net
    log_std          -> log_std

SB3 has no observation normalization inside the model, so the robometa normalizer is folded into the first
Linear layer of both networks (see :func:`export_sb3`). The zip loads with a plain ``PPO.load(path)`` and keeps
training with SB3's own PPO.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from stable_baselines3 import PPO

from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, fold_context
from envs.family import Family, Task
from envs.files import atomic_write
from envs.task_env import TaskEnv


def _check_params(params: Params, obs_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
    """Raise a one-line ``ValueError`` unless ``params`` has exactly ``ActorCritic(obs_dim, action_dim, hidden)``'s
    names and shapes."""
    expected = {k: tuple(v.shape) for k, v in ActorCritic(obs_dim, action_dim, hidden).named_parameters()}
    if set(params) != set(expected):
        diff = sorted(set(params) ^ set(expected))
        raise ValueError(f"params keys differ from ActorCritic({obs_dim}, {action_dim}, {hidden}) at {diff}")
    for k, shape in expected.items():
        if tuple(params[k].shape) != shape:
            raise ValueError(f"params[{k!r}] has shape {tuple(params[k].shape)}: expected {shape}")


def _check_path(path: str | Path) -> Path:
    """``path`` as a ``Path``, or a one-line ``ValueError`` before anything is built or written."""
    path = Path(path)
    if path.suffix != ".zip":
        raise ValueError(f"path={str(path)!r} is not allowed: it must end in .zip (SB3's format)")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"path={str(path)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"path={str(path)!r}: folder {str(folder)!r} is not writable")
    return path


def _fold_normalizer(
    weight: torch.Tensor, bias: torch.Tensor, normalizer: ObsNormalizer
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first Linear layer ``weight [out, obs_dim]``, ``bias [out]`` acting on raw observations, in float64.

    ``W (x - m) / s + b = (W / s) x + (b - W (m / s))`` with ``s = sqrt(var + 1e-8)``, the normalizer's own std.
    """
    w, b = weight.detach().to(torch.float64), bias.detach().to(torch.float64)
    if not normalizer.enabled:
        return w, b
    mean = normalizer.mean.to(torch.float64)
    std = torch.sqrt(normalizer.var.to(torch.float64) + 1e-8)
    return w / std, b - w @ (mean / std)


def export_sb3(
    params: Params,
    hidden: tuple[int, ...],
    normalizer: ObsNormalizer,
    family: str | Family,
    task: Task,
    path: str | Path,
) -> PPO:
    """Write a robometa policy as an SB3 ``PPO`` zip that ``PPO.load(path)`` opens and can keep training.

    The PPO is built on ``TaskEnv(family, task)`` with SB3's default hyperparameters (``seed=0``, CPU) and an
    ``MlpPolicy`` of ``net_arch=dict(pi=hidden, vf=hidden)``, Tanh, ``ortho_init=False``; its weights are then
    replaced by ``params``. The normalizer is folded into the first Linear layer of the policy and value
    networks, so the SB3 model takes raw observations. That fold is exact except for the normalizer's clip of
    normalized observations to ±10: observations beyond 10 standard deviations of the running mean are not
    clipped by the exported model. The normalizer's statistics are frozen at export (SB3 keeps training the
    folded weights, not the statistics). A disabled normalizer is copied as the identity. The arithmetic is done
    in float64 and cast to the model's float32.

    :param params: an ``ActorCritic(obs_dim, action_dim, hidden)`` parameter dict (unbatched, any float dtype); a
        context (CAVIA) is folded into the policy's first layer (:func:`agents.policy.fold_context`).
    :param hidden: hidden layer widths of both networks.
    :param normalizer: the observation normalizer trained with ``params`` (``[obs_dim]`` statistics).
    :param family: family name or instance.
    :param task: the task the SB3 model's env runs.
    :param path: destination ``.zip``; its folder must exist and be writable. Written atomically (temporary file in
        the same folder, then ``os.replace``): a failure leaves ``path`` as it was.
    :return: the exported model (its env is ``TaskEnv(family, task)``).
    """
    path = _check_path(path)
    params = fold_context(params)
    hidden = tuple(int(h) for h in hidden)
    env = TaskEnv(family, task)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    _check_params(params, obs_dim, action_dim, hidden)
    if normalizer.mean.shape != (obs_dim,):
        raise ValueError(f"normalizer has {tuple(normalizer.mean.shape)} statistics: expected ({obs_dim},)")

    model = PPO(
        "MlpPolicy",
        env,
        policy_kwargs=dict(
            net_arch=dict(pi=list(hidden), vf=list(hidden)), activation_fn=torch.nn.Tanh, ortho_init=False
        ),
        seed=0,
        device="cpu",
    )
    last = 2 * len(hidden)
    state: dict[str, torch.Tensor] = {"log_std": params["log_std"].detach().to(torch.float64)}
    for net, extractor, head in (("pi", "policy_net", "action_net"), ("vf", "value_net", "value_net")):
        for idx in range(0, last + 1, 2):
            w, b = params[f"{net}.{idx}.weight"], params[f"{net}.{idx}.bias"]
            if idx == 0:  # only the first layer sees observations
                w, b = _fold_normalizer(w, b, normalizer)
            name = head if idx == last else f"mlp_extractor.{extractor}.{idx}"
            state[f"{name}.weight"], state[f"{name}.bias"] = w.detach(), b.detach()
    target = model.policy.state_dict()
    # strict load: a layout change in a future SB3 fails here instead of leaving some weights random.
    model.policy.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=True)

    atomic_write(path, model.save)  # SB3 writes to an open binary file as it would to a path
    return model
