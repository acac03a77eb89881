"""The baselines every meta-learner is measured against, at the same budget and under the same protocol.

- ``scratch``: a fresh network adapted with the run's inner loop.
- ``multitask``: PPO on the train split for the run's env steps (trained once, cached in the run folder), then the
  run's inner loop.
- ``sb3``: Stable-Baselines3 PPO from scratch on each task with the same per-task env steps.
- ``oracle``: ``multitask`` that also sees the task's parameters: an upper bound, not meta-learning.
- ``search``: the oracle's policy told the task parameters that did best in the support episodes (strategy
  optimization); it never sees a held-out task's parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, init_params, stack
from agents.rollout import collect
from envs.family import Family, TaskBatch
from envs.oracle import OracleFamily
from envs.sim import SimSettings
from envs.task_env import TaskEnv
from envs.vec_env import TaskVecEnv
from evaluation.protocol import METRICS, AdaptedMethod, EvalConfig, Method
from meta.config import TrainConfig, family_of, gradient_critic, inner_loop, steps_per_iteration
from meta.outer_loop import OuterLoop
from meta.runs import RunFolder, check_config, load_run
from meta.trainer import train

BASELINES = ("scratch", "multitask", "sb3", "oracle", "search")
TRAINED_IN = {"multitask": "multitask", "oracle": "oracle", "search": "oracle"}
"""The training run each baseline that needs one uses: search tells the oracle's policy the parameters it searched."""
TRAINED_BASELINES = tuple(dict.fromkeys(TRAINED_IN.values()))
"""Baselines with a training run of their own (multitask, oracle), cached in ``RUN_DIR/eval/<name>-<iterations>``."""


def scratch_method(cfg: TrainConfig, family: Family, seed: int) -> AdaptedMethod:
    """A freshly initialized policy (no observation statistics) adapted with the run's inner loop (every parameter
    at ``inner_lr``: it has no context)."""
    module = ActorCritic(family.obs_dim, family.action_dim, cfg.hidden)
    normalizer = ObsNormalizer(family.obs_dim, enabled=False)
    params = init_params(module, 10_000 + seed, cfg.log_std_init)
    adaptation = dataclasses.replace(inner_loop(cfg, module), steps=1)  # one step per round, as every method's
    return AdaptedMethod("scratch", adaptation, params, normalizer)


BASELINE_SETTINGS = ("log_std_init", "outer_lr", "epochs", "ent_coef", "bound_coef", "clip", "max_grad_norm")
"""What a trained baseline may set apart from its run (``settings``): its PPO's own settings, which change neither
its env-step budget nor how it is adapted. PPO may walk best with other settings than a meta-learner adapts with
(terrain: a quieter initial policy), and each method is compared at its best."""


def baseline_config(
    run_cfg: TrainConfig, trained: str, iterations: int, settings: dict[str, Any] | None = None
) -> TrainConfig:
    """The config of a run's trained baseline ``trained`` (``multitask`` or ``oracle``): multitask PPO with the
    run's settings, ``settings`` (keys of :data:`BASELINE_SETTINGS`) over them, for the env steps of ``iterations``
    of the run's iterations (as many iterations for a gradient learner's run; an in-context learner's trials take
    ``trial_episodes`` episodes per world where multitask takes two); the oracle also reads the task's parameters.
    A context (CAVIA) is dropped: multitask PPO adapts every parameter; an in-context learner's critic is its own
    (:func:`meta.config.gradient_critic`). A setting outside :data:`BASELINE_SETTINGS`
    or a bad value is refused (one-line ``ValueError``)."""
    settings = settings or {}
    for key in settings:
        if key not in BASELINE_SETTINGS:
            raise ValueError(
                f"baseline setting {key!r} is not allowed: expected one of {', '.join(BASELINE_SETTINGS)} "
                "(a baseline's budget and adaptation are its run's)"
            )
    oracle = {"task_in_obs": True} if trained == "oracle" else {}
    cfg = dataclasses.replace(
        run_cfg, algo="multitask", context_dim=0, critic=gradient_critic(run_cfg), **oracle, **settings
    )
    budget = iterations * steps_per_iteration(run_cfg) / steps_per_iteration(cfg)
    return dataclasses.replace(cfg, iterations=max(1, round(budget)))


def trained_baseline(
    run: Path, cfg: TrainConfig, trained: str, iterations: int, settings: dict[str, Any] | None = None
) -> tuple[TrainConfig, OuterLoop, ObsNormalizer]:
    """The run's trained baseline ``trained`` (``multitask`` or ``oracle``) for the budget of ``iterations``
    meta-iterations: multitask PPO with :func:`baseline_config`, trained into ``RUN_DIR/eval/<trained>-<iterations>``
    once; a complete one is loaded, an interrupted one finished first. A cached run trained with another config
    (one-line ``ValueError``) is not taken for it."""
    folder = RunFolder(Path(run)).baseline(trained, iterations)
    wanted = baseline_config(cfg, trained, iterations, settings)
    if RunFolder(folder).checkpoint("latest").is_file():
        check_config(folder, wanted, "this run needs", "delete the folder to train it again")
        train(None, resume=str(folder))  # nothing to do for a complete run
    else:
        train(dataclasses.replace(wanted, out=str(folder)))
    return load_run(folder)


def multitask_method(
    run: Path, cfg: TrainConfig, iterations: int, settings: dict[str, Any] | None = None
) -> AdaptedMethod:
    """The multitask baseline of a run: PPO on the train split for the run's env-step budget (the same iterations
    and rollout sizes), trained once; adapted with the run's inner loop (scalar step size, every parameter)."""
    _, learner, normalizer = trained_baseline(run, cfg, "multitask", iterations, settings)
    return AdaptedMethod.of("multitask", learner, normalizer)


def oracle_method(
    run: Path, cfg: TrainConfig, iterations: int, settings: dict[str, Any] | None = None
) -> AdaptedMethod:
    """The oracle baseline of a run, an upper bound: the multitask baseline with the task's parameters in its
    observation (``task_in_obs``), for the same budget, trained once; it acts in the oracle family
    (:class:`envs.oracle.OracleFamily`) and is adapted with the run's inner loop."""
    o_cfg, learner, normalizer = trained_baseline(run, cfg, "oracle", iterations, settings)
    return AdaptedMethod.of("oracle", learner, normalizer, family_of(o_cfg))


@dataclass
class SearchMethod:
    """Strategy optimization (Yu, Liu & Turk 2019): the oracle's policy, told task parameters found by search.

    Adaptation searches what the policy is told about the task instead of stepping its weights: each of K rounds
    tries ``support_episodes`` candidate parameter sets for one episode each (round 1: those of tasks drawn from
    the train split; round k > 1: the best so far plus Gaussian noise of ``spread / (k - 1)``, in the normalized
    inputs' units, where the train tasks spread about 1), and the policy is measured with the candidate whose
    episode returned most so far; before the first round (k = 0) it is told the average train task. The oracle
    learnt from the train tasks' parameters; a held-out task's are never used. Its weights never change."""

    module: ActorCritic
    """The oracle's network with its task inputs as a context (``context_dim`` = the family's parameter count)."""
    theta: Params
    """Its parameters; ``context`` (the told parameters, normalized) is what the search sets."""
    normalizer: ObsNormalizer
    """Of the base family's observation."""
    told: ObsNormalizer
    """The oracle's normalizer of the parameter inputs: turns scaled parameters into the context."""
    oracle: OracleFamily
    spread: float = 0.5
    name: str = "search"

    def context(self, family: Family, tasks: TaskBatch) -> torch.Tensor:
        """The context ``[n_tasks, n_params]`` that tells the policy ``tasks``' parameters."""
        return self.told(self.oracle.scaled(family.task_tensors(tasks))).to(self.theta["context"])

    def curve(self, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int, sim: SimSettings) -> dict:
        n, r, horizon = len(tasks), ec.support_episodes, family.episode_length
        rng, noise = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        weights = {k: v for k, v in self.theta.items() if k != "context"}
        eval_env = TaskVecEnv(family, tasks, ec.eval_episodes, sim, seed=seed)
        trials = TaskBatch(tasks.family, tasks.split, tuple(t for t in tasks.tasks for _ in range(r)))
        trial_env = TaskVecEnv(family, trials, 1, sim, seed=seed)  # task i's candidate j is world i * r + j

        def run(env: TaskVecEnv, context: torch.Tensor) -> dict[str, torch.Tensor]:
            params = {**stack(weights, context.shape[0]), "context": context}
            return collect(env, self.module, params, self.normalizer, horizon, noise, int(rng.integers(2**31))).stats

        best = torch.zeros(n, self.theta["context"].shape[0], dtype=self.theta["context"].dtype)
        best_return = torch.full((n,), -torch.inf)
        curve: dict[str, list] = {m: [] for m in METRICS}
        for k in range(ec.steps + 1):
            measured = run(eval_env, best)
            for m in METRICS:
                curve[m].append(measured[m].cpu().numpy())
            if k == ec.steps:
                break
            if k == 0:
                candidates = self.context(family, family.sample(rng, n * r, "train")).reshape(n, r, -1)
            else:
                step = torch.randn(n, r, best.shape[1], generator=noise, dtype=best.dtype)
                candidates = best[:, None] + self.spread / k * step
            returns = run(trial_env, candidates.reshape(n * r, -1))["return"].reshape(n, r).to(best_return)
            top, i = returns.max(dim=1)
            better = top > best_return
            best_return = torch.where(better, top, best_return)
            best = torch.where(better[:, None], candidates[torch.arange(n), i], best)
        curve = {m: np.stack(v) for m, v in curve.items()}
        return {**curve, "adaptation_env_steps": ec.steps * r * horizon, "adapted": {"context": best}}


def search_method(run: Path, cfg: TrainConfig, iterations: int, settings: dict[str, Any] | None = None) -> SearchMethod:
    """The search baseline of a run: the run's oracle baseline (trained once and cached, as for ``oracle``) with
    its task inputs turned into a context that :class:`SearchMethod` sets."""
    o_cfg, learner, normalizer = trained_baseline(run, cfg, "oracle", iterations, settings)
    family = family_of(cfg)
    d, p = family.obs_dim, len(family.params)
    module = ActorCritic(d, family.action_dim, o_cfg.hidden, context_dim=p)
    theta = {k: v.detach() for k, v in learner.theta.items()}
    # The value head also read the parameters; the search never asks it for a value, so its inputs are cut to the
    # observation's only to fit the context network's shape.
    theta["vf.0.weight"] = theta["vf.0.weight"][:, :d]
    theta["context"] = torch.zeros(p, dtype=theta["pi.0.weight"].dtype)
    observed, told = ObsNormalizer(d, normalizer.enabled), ObsNormalizer(p, normalizer.enabled)
    state = normalizer.state_dict()
    observed.load_state_dict({**state, "mean": state["mean"][:d], "var": state["var"][:d]})
    told.load_state_dict({**state, "mean": state["mean"][d:], "var": state["var"][d:]})
    return SearchMethod(module, theta, observed, told, family_of(o_cfg))


@dataclass
class SB3Baseline:
    """Stable-Baselines3 PPO (MlpPolicy defaults) from scratch on each task through ``TaskEnv``, with the same
    per-task budget: one PPO update on each block of ``support_episodes`` episodes, measured before the first and
    after every block on fresh episodes of a separate env. Its own ``TaskEnv`` per task is the point: it is what an
    SB3 user would run."""

    name: str = "sb3"

    def curve(self, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int, sim: SimSettings) -> dict:
        # SB3 steps its own single-task gymnasium env (MuJoCo on the CPU), whatever ``sim`` the others use.
        from stable_baselines3 import PPO
        from stable_baselines3.common.logger import Logger

        block = ec.support_episodes * family.episode_length
        curve = {m: np.zeros((ec.steps + 1, len(tasks))) for m in METRICS}
        used = []
        for i, task in enumerate(tasks.tasks):
            model = PPO(
                "MlpPolicy",
                TaskEnv(family, task),
                n_steps=block,
                batch_size=max(d for d in range(1, 65) if block % d == 0),  # minibatches that split the rollout
                seed=seed * 1000 + i,
                device="cpu",
            )
            # SB3's default logger makes a folder in the temporary directory on every learn() call, even silent.
            model.set_logger(Logger(folder=None, output_formats=[]))
            probe = TaskEnv(family, task)
            for k in range(ec.steps + 1):
                for m, value in _sb3_episodes(model, probe, ec.eval_episodes, seed * 1000 + 100 * i + k).items():
                    curve[m][k, i] = value
                if k < ec.steps:
                    model.learn(block, reset_num_timesteps=False)
            used.append(model.num_timesteps)
        if len(set(used)) != 1:
            raise RuntimeError(f"SB3 used different budgets per task: {used}")
        return {**curve, "adaptation_env_steps": used[0]}


def _sb3_episodes(model, env: TaskEnv, episodes: int, seed: int) -> dict[str, float]:
    """Mean return, success rate and length of ``episodes`` episodes of ``model``'s stochastic policy."""
    returns, successes, lengths = [], [], []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed * 100 + e)
        done, total, steps, info = False, 0.0, 0, {}
        while not done:
            action, _ = model.predict(obs, deterministic=False)
            obs, reward, terminated, truncated, info = env.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        returns.append(total)
        successes.append(float(info["is_success"]))
        lengths.append(steps)
    return {"return": float(np.mean(returns)), "success": float(np.mean(successes)), "length": float(np.mean(lengths))}


def baseline(name: str, run: Path, cfg: TrainConfig, iterations: int, settings: dict[str, Any] | None = None) -> Method:
    """The baseline ``name`` (one of :data:`BASELINES`) of the run in ``run`` with config ``cfg``, at the budget of
    ``iterations`` meta-iterations; the trained ones (:data:`TRAINED_IN`) with their own ``settings``."""
    if name == "scratch":
        return scratch_method(cfg, family_of(cfg), cfg.seed)
    if name == "multitask":
        return multitask_method(run, cfg, iterations, settings)
    if name == "oracle":
        return oracle_method(run, cfg, iterations, settings)
    if name == "search":
        return search_method(run, cfg, iterations, settings)
    if name == "sb3":
        return SB3Baseline()
    raise ValueError(f"baseline {name!r} is not allowed: expected one of {', '.join(BASELINES)}")
