"""Few-shot adaptation on held-out tasks: the protocol, its aggregate statistics, and the plot.

For each of ``n_tasks`` tasks sampled from a held-out split, every method starts from its initialization and
takes ``steps`` (K) inner PPO steps, each from ``support_episodes`` fresh episodes of its current policy; after
every step, and before the first (k = 0), it is measured on ``eval_episodes`` fresh evaluation episodes that are
never used for adaptation. All tasks adapt at once (task-stacked parameters). Results are aggregated over tasks
and seeds as mean and IQM with 95 % bootstrap intervals.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, init_params, stack
from agents.ppo import adapt
from agents.rollout import collect
from envs.family import Family, TaskBatch
from envs.files import atomic_path
from envs.oracle import OracleFamily
from envs.task_env import TaskEnv
from envs.vec_env import TaskVecEnv
from meta.config import TrainConfig, differences, family_of, loss_weights, to_dict
from meta.outer_loop import OuterLoop, advantages
from meta.statistics import summarize

METRICS = ("return", "success", "length")


@dataclass(frozen=True)
class EvalConfig:
    """The protocol's settings (also ``evaluate.py``'s options)."""

    split: str = "test"
    """held-out split to sample tasks from: test or ood"""
    n_tasks: int = 20
    """tasks per seed"""
    steps: int = 3
    """K: inner steps of adaptation, each from fresh support episodes; k = 0 … K are measured"""
    support_episodes: int = 6
    """episodes per task collected for each inner step (K = 3 steps then spend 18, inside a 20-episode budget)"""
    eval_episodes: int = 10
    """fresh episodes per task measuring the policy before and after every step"""
    seeds: tuple[int, ...] = (0,)
    """seeds: each samples its own tasks, resets and action noise"""

    def __post_init__(self) -> None:
        if self.split not in ("test", "ood"):
            raise ValueError(
                f"split={self.split!r} is not allowed: expected test or ood (train tasks are not held out)"
            )
        for name in ("n_tasks", "support_episodes", "eval_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: expected a positive integer")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"steps={self.steps!r} is not allowed: expected an integer K >= 0")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds={self.seeds!r} is not allowed: expected one or more non-negative integers")


@dataclass
class Method:
    """An initialization and the inner loop that adapts it."""

    name: str
    module: ActorCritic
    theta: Params
    """Initial parameters (unstacked)."""
    normalizer: ObsNormalizer
    inner_lr: float | Params
    cfg: TrainConfig
    """Where the inner loop's hyperparameters (clip, coefficients, γ, λ) come from."""
    family: Family | None = None
    """The family the policy acts in when not the one evaluated on: the oracle's, whose observation adds the task.
    Its tasks are the evaluated family's."""

    def curve(self, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int) -> dict:
        return adaptation_curve(self, family if self.family is None else self.family, tasks, ec, seed)


@dataclass
class SB3Baseline:
    """Stable-Baselines3 PPO (MlpPolicy defaults) from scratch on each task through ``TaskEnv``, with the same
    per-task budget: one PPO update on each block of ``support_episodes`` episodes, measured before the first and
    after every block on fresh episodes of a separate env."""

    name: str = "sb3"

    def curve(self, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int) -> dict:
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


BASELINE_SETTINGS = ("log_std_init", "outer_lr", "ent_coef", "bound_coef", "clip", "max_grad_norm")
"""What a trained baseline may set apart from its run (``settings``): its PPO's own settings, which change neither
its env-step budget nor how it is adapted. PPO may walk best with other settings than a meta-learner adapts with
(terrain: a quieter initial policy), and each method is compared at its best."""


def baseline_config(
    run_cfg: TrainConfig, trained: str, iterations: int, settings: dict[str, Any] | None = None
) -> TrainConfig:
    """The config of a run's trained baseline ``trained`` (``multitask`` or ``oracle``): multitask PPO with the
    run's settings, ``settings`` (keys of :data:`BASELINE_SETTINGS`) over them, for ``iterations``; the oracle
    also reads the task's parameters. A context (CAVIA) is dropped: multitask PPO adapts every parameter. A setting
    outside :data:`BASELINE_SETTINGS` or a bad value is refused (one-line ``ValueError``)."""
    settings = settings or {}
    for key in settings:
        if key not in BASELINE_SETTINGS:
            raise ValueError(
                f"baseline setting {key!r} is not allowed: expected one of {', '.join(BASELINE_SETTINGS)} "
                "(a baseline's budget and adaptation are its run's)"
            )
    oracle = {"task_in_obs": True} if trained == "oracle" else {}
    return dataclasses.replace(run_cfg, algo="multitask", context_dim=0, iterations=iterations, **oracle, **settings)


def multitask_method(run: Path, cfg: TrainConfig, iterations: int, settings: dict[str, Any] | None = None) -> Method:
    """The multitask baseline of a run: PPO on the train split for the run's env-step budget (the same iterations
    and rollout sizes), trained once (with ``settings``: :func:`baseline_config`) and cached in
    ``RUN_DIR/eval/multitask-<iterations>``; adapted with the run's inner loop (scalar step size)."""
    mt_cfg, learner, normalizer = _trained_baseline(
        Path(run) / "eval" / f"multitask-{iterations}", baseline_config(cfg, "multitask", iterations, settings)
    )
    return Method(
        "multitask", learner.module, {k: v.detach() for k, v in learner.theta.items()}, normalizer, cfg.inner_lr, mt_cfg
    )


def oracle_method(run: Path, cfg: TrainConfig, iterations: int, settings: dict[str, Any] | None = None) -> Method:
    """The oracle baseline of a run, an upper bound: the multitask baseline with the task's parameters in its
    observation (``task_in_obs``), for the same budget, trained once and cached in ``RUN_DIR/eval/oracle-<iterations>``;
    it acts in the oracle family (:class:`envs.oracle.OracleFamily`) and is adapted with the run's inner loop."""
    o_cfg, learner, normalizer = _trained_baseline(
        Path(run) / "eval" / f"oracle-{iterations}", baseline_config(cfg, "oracle", iterations, settings)
    )
    theta = {k: v.detach() for k, v in learner.theta.items()}
    return Method("oracle", learner.module, theta, normalizer, cfg.inner_lr, o_cfg, family_of(o_cfg))


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

    def curve(self, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int) -> dict:
        n, r, horizon = len(tasks), ec.support_episodes, family.episode_length
        rng, noise = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        weights = {k: v for k, v in self.theta.items() if k != "context"}
        eval_env = TaskVecEnv(family, tasks, ec.eval_episodes, seed=seed)
        trials = TaskBatch(tasks.family, tasks.split, tuple(t for t in tasks.tasks for _ in range(r)))
        trial_env = TaskVecEnv(family, trials, 1, seed=seed)  # task i's candidate j is world i * r + j

        def run(env: TaskVecEnv, context: torch.Tensor) -> dict[str, torch.Tensor]:
            params = {**stack(weights, context.shape[0]), "context": context}
            return collect(env, self.module, params, self.normalizer, horizon, noise, int(rng.integers(2**31))).stats

        best = torch.zeros(n, self.theta["context"].shape[0], dtype=self.theta["context"].dtype)
        best_return = torch.full((n,), -torch.inf)
        curve: dict[str, list] = {m: [] for m in METRICS}
        for k in range(ec.steps + 1):
            measured = run(eval_env, best)
            for m in METRICS:
                curve[m].append(measured[m].numpy())
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
    oracle = oracle_method(run, cfg, iterations, settings)
    family = family_of(cfg)
    d, p = family.obs_dim, len(family.params)
    module = ActorCritic(d, family.action_dim, oracle.cfg.hidden, context_dim=p)
    theta = dict(oracle.theta)
    # The value head also read the parameters; the search never asks it for a value, so its inputs are cut to the
    # observation's only to fit the context network's shape.
    theta["vf.0.weight"] = theta["vf.0.weight"][:, :d]
    theta["context"] = torch.zeros(p, dtype=theta["pi.0.weight"].dtype)
    normalizer, told = ObsNormalizer(d, oracle.normalizer.enabled), ObsNormalizer(p, oracle.normalizer.enabled)
    state = oracle.normalizer.state_dict()
    normalizer.load_state_dict({**state, "mean": state["mean"][:d], "var": state["var"][:d]})
    told.load_state_dict({**state, "mean": state["mean"][d:], "var": state["var"][d:]})
    return SearchMethod(module, theta, normalizer, told, oracle.family)


def _trained_baseline(folder: Path, cfg: TrainConfig) -> tuple[TrainConfig, OuterLoop, ObsNormalizer]:
    """Multitask PPO with ``cfg`` (:func:`baseline_config`), trained into ``folder`` once: a complete one is loaded,
    an interrupted one finished first. A cached run trained with another config (one-line ``ValueError``) is not
    taken for it."""
    from meta.trainer import load_run, run_config, train

    if (folder / "checkpoints" / "latest.pt").is_file():
        diff = differences(run_config(folder), cfg)  # resuming checks the checkpoint against this config
        if diff:
            field, was, now = diff[0]
            raise ValueError(
                f"{folder} holds a baseline trained with {field}={was!r}, but this run needs {now!r}: "
                "delete the folder to train it again"
            )
        train(None, resume=str(folder))  # nothing to do for a complete run
    else:
        train(dataclasses.replace(cfg, out=str(folder)))
    return load_run(folder)


BASELINES = ("scratch", "multitask", "sb3", "oracle", "search")
TRAINED_IN = {"multitask": "multitask", "oracle": "oracle", "search": "oracle"}
"""The training run each baseline that needs one uses: search tells the oracle's policy the parameters it searched."""
TRAINED_BASELINES = tuple(dict.fromkeys(TRAINED_IN.values()))
"""Baselines with a training run of their own (multitask, oracle), cached in ``RUN_DIR/eval/<name>-<iterations>``."""


def baseline(
    name: str, run: Path, cfg: TrainConfig, iterations: int, settings: dict[str, Any] | None = None
) -> Method | SB3Baseline | SearchMethod:
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


def header(run: Path, checkpoint: str, ec: EvalConfig, cfg: TrainConfig) -> dict:
    """What an ``eval.json`` records before its numbers: the run, the protocol, the run's config and versions."""
    import mujoco  # envs chose the offscreen GL backend (MUJOCO_GL) before this first import

    versions = {"torch": torch.__version__, "mujoco": mujoco.__version__, "python": platform.python_version()}
    return {
        "run": str(run),
        "checkpoint": checkpoint,
        "config": config_dict(ec),
        "train_config": to_dict(cfg),
        "versions": versions,
    }


def meta_method(cfg: TrainConfig, learner: OuterLoop, normalizer: ObsNormalizer) -> Method:
    """The meta-learned initialization of a run, adapted with its own inner loop (Meta-SGD: its step sizes)."""
    lr = {k: v.detach() if torch.is_tensor(v) else v for k, v in learner.inner_lr().items()}  # Meta-SGD's are tensors
    theta = {k: v.detach() for k, v in learner.theta.items()}
    return Method(cfg.algo, learner.module, theta, normalizer, lr, cfg)


def scratch_method(cfg: TrainConfig, family: Family, seed: int) -> Method:
    """A freshly initialized policy (no observation statistics) adapted with the run's inner loop."""
    module = ActorCritic(family.obs_dim, family.action_dim, cfg.hidden)
    normalizer = ObsNormalizer(family.obs_dim, enabled=False)
    params = init_params(module, 10_000 + seed, cfg.log_std_init)
    return Method("scratch", module, params, normalizer, cfg.inner_lr, cfg)


def adaptation_curve(method: Method, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int) -> dict:
    """Measure ``method`` on ``tasks`` before and after each of K inner steps.

    :return: ``{"return"|"success"|"length": array [K + 1, n_tasks]}`` (per-task means over the evaluation
        episodes), ``"adaptation_env_steps"`` (env steps each task's adaptation consumed) and ``"adapted"``: the
        parameters after K steps, task-stacked ``[n_tasks, *shape]``.
    """
    n, horizon, c = len(tasks), family.episode_length, method.cfg
    support_env = TaskVecEnv(family, tasks, ec.support_episodes, seed=seed)
    eval_env = TaskVecEnv(family, tasks, ec.eval_episodes, seed=seed)
    noise = torch.Generator().manual_seed(seed)
    seeds = iter(np.random.default_rng(seed).integers(2**31, size=2 * ec.steps + 1).tolist())
    phi = {k: v.detach().unsqueeze(0).repeat(n, *([1] * v.dim())) for k, v in method.theta.items()}
    curve: dict[str, list] = {m: [] for m in METRICS}
    used = 0
    for k in range(ec.steps + 1):
        measured = collect(eval_env, method.module, phi, method.normalizer, horizon, noise, next(seeds))
        for m in METRICS:
            curve[m].append(measured.stats[m].numpy())
        if k == ec.steps:
            break
        support = collect(support_env, method.module, phi, method.normalizer, horizon, noise, next(seeds))
        used += support.rewards.shape[0] * support.rewards.shape[2]  # steps × episodes of one task
        adv, ret = advantages(support, c)
        start = {k: v.requires_grad_(True) for k, v in phi.items()}
        phi, _ = adapt(method.module, start, support, adv, ret, 1, method.inner_lr, False, loss_weights(c))
        phi = {k: v.detach() for k, v in phi.items()}
    return {**{m: np.stack(v) for m, v in curve.items()}, "adaptation_env_steps": used, "adapted": phi}


def aggregate(curves: list[dict], seed: int = 0) -> list[dict]:
    """Per k: each metric's :func:`meta.statistics.summarize` over all tasks of all seeds."""
    steps = curves[0]["return"].shape[0]
    return [
        {"k": k, **{m: summarize(np.concatenate([c[m][k] for c in curves]), seed=seed) for m in METRICS}}
        for k in range(steps)
    ]


def plot(summaries: dict[str, list[dict]], title: str, path) -> None:
    """Return and success rate (IQM with 95 % bands) against k, one line per method, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "return", "episode return"), (axes[1], "success", "success rate")):
        for name, rows in summaries.items():
            ks = [r["k"] for r in rows]
            mid = [r[metric]["iqm"] for r in rows]
            ax.plot(ks, mid, marker="o", label=name)
            ax.fill_between(
                ks, [r[metric]["iqm_ci_low"] for r in rows], [r[metric]["iqm_ci_high"] for r in rows], alpha=0.2
            )
        ax.set_xlabel("inner steps k (0 = before adaptation)")
        ax.set_ylabel(f"{label} (IQM, 95 % CI)")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(-0.05, 1.05)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_methods(
    methods: list[Method | SB3Baseline | SearchMethod], family: Family, ec: EvalConfig, progress=None
) -> dict:
    """Every method on the same tasks and seeds. Returns per-task curves, summaries and the task batches."""
    results: dict = {"tasks": {}, "methods": {}}
    for seed in ec.seeds:
        results["tasks"][str(seed)] = family.sample(seed, ec.n_tasks, ec.split).to_dict()
    for method in methods:
        curves = []
        for seed in ec.seeds:
            tasks = family.sample(seed, ec.n_tasks, ec.split)
            curves.append(method.curve(family, tasks, ec, seed))
            if progress is not None:
                progress.update(1)
        results["methods"][method.name] = {
            "adaptation_env_steps_per_task": curves[0]["adaptation_env_steps"],
            "per_task": {m: [c[m].tolist() for c in curves] for m in METRICS},
            "summary": aggregate(curves),
        }
    return results


def config_dict(ec: EvalConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(ec).items()}


def table(results: dict) -> str:
    """The printed summary: per method and k, return and success (IQM [95 % CI])."""
    lines = [f"{'method':10s} {'k':>2s}  {'return IQM [95% CI]':>28s}  {'success IQM [95% CI]':>24s}"]
    for name, r in results["methods"].items():
        for row in r["summary"]:
            ret, suc = row["return"], row["success"]
            lines.append(
                f"{name:10s} {row['k']:2d}  {ret['iqm']:9.2f} [{ret['iqm_ci_low']:8.2f}, {ret['iqm_ci_high']:8.2f}]"
                f"  {suc['iqm']:6.1%} [{suc['iqm_ci_low']:6.1%}, {suc['iqm_ci_high']:6.1%}]"
            )
    return "\n".join(lines)


def write_outputs(results: dict, out: Path, title: str) -> None:
    """``eval.json`` (every number), ``eval.csv`` (one row per method, k and metric) and ``adaptation.png`` in ``out``;
    each written whole or not at all (:func:`envs.files.atomic_path`)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"method": name, "k": row["k"], "metric": m, **row[m]}
        for name, r in results["methods"].items()
        for row in r["summary"]
        for m in METRICS
    ]
    writes = {
        "eval.json": lambda p: p.write_text(json.dumps(results, indent=1) + "\n"),
        "eval.csv": lambda p: _write_csv(p, rows),
        "adaptation.png": lambda p: plot({k: v["summary"] for k, v in results["methods"].items()}, title, p),
    }
    for name, write in writes.items():
        with atomic_path(out / name) as tmp:
            write(tmp)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
