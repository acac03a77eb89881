"""Few-shot adaptation on held-out tasks: the protocol, and the methods it measures.

For each of ``n_tasks`` tasks sampled from a held-out split, every method starts from its initialization and takes
``steps`` (K) rounds of adaptation, each from ``support_episodes`` fresh episodes of its current policy; after every
round, and before the first (k = 0), it is measured on ``eval_episodes`` fresh evaluation episodes that are never
used for adaptation. All tasks adapt at once. Results are aggregated over tasks and seeds as mean and IQM with 95 %
bootstrap intervals.

A method is anything with a ``name`` and a :meth:`Method.curve`. The meta-learned policy and the baselines that
adapt like it are :class:`AdaptedMethod`: an initialization and an :class:`agents.inner_loop.Adaptation`, one round
being one call of its ``adapt``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from agents.inner_loop import Adaptation
from agents.normalizer import ObsNormalizer
from agents.policy import Params
from envs.family import HELD_OUT, Family, TaskBatch
from envs.sim import SimSettings
from envs.vec_env import TaskVecEnv
from evaluation.statistics import summarize
from meta.outer_loop import OuterLoop

METRICS = ("return", "success", "length")


@dataclass(frozen=True)
class EvalConfig:
    """The protocol's settings (also ``evaluate.py``'s options)."""

    split: str = field(default="test", metadata={"choices": HELD_OUT})
    """held-out split to sample tasks from: val (for tuning), test (for reporting) or ood (outside the training
    distribution)"""
    n_tasks: int = field(default=20, metadata={"flag": "--tasks"})
    """tasks per seed"""
    steps: int = 3
    """K: rounds of adaptation (inner steps), each from fresh support episodes; k = 0 (before adapting) … K are
    measured"""
    support_episodes: int = 6
    """episodes per task collected for each round (K = 3 rounds then spend 18, inside a 20-episode budget)"""
    eval_episodes: int = 10
    """fresh episodes per task measuring the policy before and after every round"""
    seeds: tuple[int, ...] = (0,)
    """seeds: each samples its own tasks, resets and action noise"""

    def __post_init__(self) -> None:
        if self.split not in HELD_OUT:
            raise ValueError(
                f"split={self.split!r} is not allowed: expected {', '.join(HELD_OUT)} (train tasks are not held out)"
            )
        for name in ("n_tasks", "support_episodes", "eval_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: expected a positive integer")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"steps={self.steps!r} is not allowed: expected an integer K >= 0")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds={self.seeds!r} is not allowed: expected one or more non-negative integers")


def config_dict(ec: EvalConfig) -> dict[str, Any]:
    """``ec`` as plain JSON values (what ``eval.json`` records as its ``config``)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(ec).items()}


class Method(Protocol):
    """What the protocol measures: a name and the curve of a set of tasks."""

    name: str

    def curve(self, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int, sim: SimSettings) -> dict:
        """Measure the method on ``tasks`` before and after each of K rounds, its worlds stepping in ``sim``.

        :return: ``{"return"|"success"|"length": array [K + 1, n_tasks]}`` (per-task means over the evaluation
            episodes), ``"adaptation_env_steps"`` (env steps each task's adaptation consumed) and, where the method
            has them, ``"adapted"`` (what it knows of each task after K rounds), ``"within_trial"`` (success of
            each support episode, ``[K · support_episodes, n_tasks]``) and ``"adaptation_seconds"`` (per task:
            collecting support episodes, and adapting to them).
        """
        ...


@dataclass
class AdaptedMethod:
    """An initialization and the adaptation that turns it into each task's policy."""

    name: str
    adaptation: Adaptation
    theta: Params
    """Initial parameters (unstacked)."""
    normalizer: ObsNormalizer
    family: Family | None = None
    """The family the policy acts in when not the one evaluated on: the oracle's, whose observation adds the task.
    Its tasks are the evaluated family's."""

    @staticmethod
    def of(name: str, learner: OuterLoop, normalizer: ObsNormalizer, family: Family | None = None) -> AdaptedMethod:
        """A trained learner's initialization, adapted as the learner says (:meth:`meta.outer_loop.OuterLoop.
        adaptation`: for gradient learners one inner step per round with its own loss, critic and step sizes)."""
        theta = {k: v.detach() for k, v in learner.theta.items()}
        return AdaptedMethod(name, learner.adaptation(), theta, normalizer, family)

    def curve(self, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int, sim: SimSettings) -> dict:
        return adaptation_curve(self, family if self.family is None else self.family, tasks, ec, seed, sim)


def adaptation_curve(
    method: AdaptedMethod, family: Family, tasks: TaskBatch, ec: EvalConfig, seed: int, sim: SimSettings
) -> dict:
    """:meth:`Method.curve` of ``method``: before each round and after the last, ``eval_episodes`` fresh episodes per
    task; each round, ``support_episodes`` fresh episodes (laid out as the adaptation says) folded into each task's
    state by the method's adaptation.
    ``"adapted"`` is the state after K rounds (for gradient learners, task-stacked parameters ``[n, *shape]``)."""
    n, horizon, a = len(tasks), family.episode_length, method.adaptation
    worlds, support_steps = a.support_layout(ec.support_episodes, horizon)
    support_env = TaskVecEnv(family, tasks, worlds, sim, seed=seed)
    eval_env = TaskVecEnv(family, tasks, ec.eval_episodes, sim, seed=seed)
    noise = torch.Generator().manual_seed(seed)
    seeds = iter(np.random.default_rng(seed).integers(2**31, size=2 * ec.steps + 1).tolist())
    state = a.start(method.theta, n)
    curve: dict[str, list] = {m: [] for m in METRICS}
    within, seconds, used = [], {"support": 0.0, "adapt": 0.0}, 0
    for k in range(ec.steps + 1):
        measured = a.collect(state, eval_env, method.normalizer, horizon, noise, next(seeds))
        for m in METRICS:
            curve[m].append(measured.stats[m].cpu().numpy())
        if k == ec.steps:
            break
        began = time.perf_counter()
        support = a.collect(state, support_env, method.normalizer, support_steps, noise, next(seeds))
        seconds["support"] += time.perf_counter() - began
        used += support.rewards.shape[0] * support.rewards.shape[2]  # steps × episodes of one task
        within.append(support_success(support.stats, ec.support_episodes))
        began = time.perf_counter()
        state, _ = a.adapt(state, support)
        seconds["adapt"] += time.perf_counter() - began
    return {
        **{m: np.stack(v) for m, v in curve.items()},
        "within_trial": np.concatenate(within) if within else np.zeros((0, n)),
        "adaptation_seconds": {k: v / n for k, v in seconds.items()},
        "adaptation_env_steps": used,
        "adapted": state,
    }


def support_success(stats: dict[str, torch.Tensor], episodes: int) -> np.ndarray:
    """Success of each of a round's ``episodes`` support episodes, ``[episodes, n]``: episode by episode where they
    ran one after another (``episode_success [n, episodes]``), else the round's rate for each of its side-by-side
    episodes."""
    per = stats.get("episode_success", stats["success"][:, None])
    return per.repeat_interleave(episodes // per.shape[1], dim=1).T.cpu().numpy()


def aggregate(curves: list[dict], seed: int = 0) -> list[dict]:
    """Per k: each metric's :func:`evaluation.statistics.summarize` over all tasks of all seeds."""
    steps = curves[0]["return"].shape[0]
    return [
        {"k": k, **{m: summarize(np.concatenate([c[m][k] for c in curves]), seed=seed) for m in METRICS}}
        for k in range(steps)
    ]


def evaluate_methods(methods: list[Method], family: Family, ec: EvalConfig, sim: SimSettings, progress=None) -> dict:
    """Every method on the same tasks and seeds, its worlds in ``sim``. Returns per-task curves, summaries and the
    task batches."""
    results: dict = {"tasks": {}, "methods": {}}
    for seed in ec.seeds:
        results["tasks"][str(seed)] = family.sample(seed, ec.n_tasks, ec.split).to_dict()
    for method in methods:
        curves = []
        for seed in ec.seeds:
            tasks = family.sample(seed, ec.n_tasks, ec.split)
            curves.append(method.curve(family, tasks, ec, seed, sim))
            if progress is not None:
                progress.update(1)
        results["methods"][method.name] = {
            "adaptation_env_steps_per_task": curves[0]["adaptation_env_steps"],
            "per_task": {m: [c[m].tolist() for c in curves] for m in METRICS},
            "summary": aggregate(curves),
        }
        if "within_trial" in curves[0]:
            within = np.concatenate([c["within_trial"] for c in curves], axis=1)  # [episodes, tasks × seeds]
            results["methods"][method.name] |= {
                "within_trial": [summarize(row) for row in within],
                "adaptation_seconds_per_task": {
                    k: float(np.mean([c["adaptation_seconds"][k] for c in curves])) for k in ("support", "adapt")
                },
            }
    return results
