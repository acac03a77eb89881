"""Meta-training makes adaptation pay on held-out ``point`` tasks: after one inner step, the meta-learned policy's
returns are significantly higher than before the step, and higher than an untrained initialization reaches with the
same step (a fresh network already gains a little from one large step, so the first comparison alone would not
prove meta-learning). Paired over the same 20 test tasks, 95 % percentile bootstrap."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from envs.registry import make_family
from envs.sim import SimSettings
from envs.vec_env import TaskVecEnv
from evaluation.protocol import AdaptedMethod, EvalConfig, adaptation_curve
from meta.algorithms import build
from meta.config import TrainConfig
from meta.runs import load_run
from meta.trainer import train

# From a sweep on this machine (docs/training.md; 3 training seeds: post − pre +6.7 to +8.8, every 95 % CI above 0;
# ~50 s of training on 2 busy cores). One large inner step; observation normalization off (with it, large inner
# steps diverged here).
POINT = dict(
    family="point", algo="maml", inner_lr=1.0, envs_per_task=16, meta_batch=10, iterations=150, normalize_obs=False
)


# Iterations of the in-context learners' check with every other setting at its default: on this machine enough to
# separate from the untrained network (rl2 about 105 s, context 60 s with the 2 cores shared).
IN_CONTEXT_ITERATIONS = {"rl2": 40, "context": 60}


def bootstrap_low(x: np.ndarray, seed: int = 0, n: int = 10_000) -> float:
    """Lower end of the 95 % percentile-bootstrap interval of the mean of ``x``."""
    means = np.random.default_rng(seed).choice(x, (n, x.size)).mean(1)
    return float(np.percentile(means, 2.5))


def pre_and_post(learner, normalizer, cfg) -> tuple[np.ndarray, np.ndarray]:
    family = make_family(cfg.family)
    tasks = family.sample(123, 20, "test")
    env = TaskVecEnv(family, tasks, cfg.envs_per_task)
    support, _, _, query = learner.adapt_and_measure(env, normalizer, torch.Generator().manual_seed(1), (7, 8))
    return support.stats["return"].numpy(), query.stats["return"].numpy()


def test_meta_trained_point_policy_adapts_to_held_out_tasks(tmp_path):
    run = train(dataclasses.replace(TrainConfig(), **POINT, out=str(tmp_path / "run")))
    cfg, learner, normalizer = load_run(run)
    pre, post = pre_and_post(learner, normalizer, cfg)
    _, untrained_post = pre_and_post(*build(cfg), cfg)
    gain, over_untrained = post - pre, post - untrained_post
    assert bootstrap_low(gain) > 0, f"post − pre {gain.mean():.2f} (CI low {bootstrap_low(gain):.2f})"
    assert bootstrap_low(over_untrained) > 0, (
        f"post − untrained post {over_untrained.mean():.2f} (CI low {bootstrap_low(over_untrained):.2f})"
    )


@pytest.mark.parametrize("algo", ["rl2", "context"])
def test_in_context_learners_with_default_settings_adapt_to_held_out_point_tasks(tmp_path, algo):
    """``python train.py --family point --algo rl2|context`` with every learning setting at its default, trained for
    a few iterations: after one round of support episodes, the trained learner's return on 20 held-out tasks lies
    above what the untrained network reaches from the same support episodes (paired, bootstrap CI)."""
    cfg = TrainConfig(family="point", algo=algo, iterations=IN_CONTEXT_ITERATIONS[algo])
    cfg, learner, normalizer = load_run(train(dataclasses.replace(cfg, out=str(tmp_path / "run"))))
    family = make_family("point")
    tasks = family.sample(123, 20, "test")
    ec = EvalConfig(n_tasks=20, steps=1, support_episodes=3, eval_episodes=4)

    def after_one_round(learner, normalizer) -> np.ndarray:
        method = AdaptedMethod.of(algo, learner, normalizer)
        return adaptation_curve(method, family, tasks, ec, 0, SimSettings())["return"][1]

    gain = after_one_round(learner, normalizer) - after_one_round(*build(cfg))
    assert bootstrap_low(gain) > 0, f"trained − untrained {gain.mean():.2f} (CI low {bootstrap_low(gain):.2f})"
