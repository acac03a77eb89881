"""The outer loops by name, and a run's learner built fresh or from a checkpoint."""

from __future__ import annotations

import torch

from agents.normalizer import ObsNormalizer
from agents.policy import Params
from meta.config import ALGOS, TrainConfig, family_of
from meta.context import ContextLearner
from meta.maml import FOMAML, MAML, MetaSGD, MultiTask
from meta.outer_loop import OuterLoop
from meta.reptile import Reptile
from meta.rl2 import RL2

OUTER_LOOPS: dict[str, type[OuterLoop]] = {
    "maml": MAML,
    "fomaml": FOMAML,
    "metasgd": MetaSGD,
    "reptile": Reptile,
    "rl2": RL2,
    "context": ContextLearner,
    "multitask": MultiTask,
}
"""Each of :data:`meta.config.ALGOS` and its outer loop."""


def make_outer_loop(cfg: TrainConfig, module: torch.nn.Module, theta: Params) -> OuterLoop:
    """The outer loop ``cfg.algo`` names: maml, fomaml, metasgd, reptile, rl2, context, or the multitask
    baseline."""
    return _outer_loop(cfg)(module, theta, cfg)


def _outer_loop(cfg: TrainConfig) -> type[OuterLoop]:
    if cfg.algo not in OUTER_LOOPS:
        raise ValueError(f"algo={cfg.algo!r} is not allowed: expected one of {', '.join(ALGOS)}")
    return OUTER_LOOPS[cfg.algo]


def build(cfg: TrainConfig, state: dict | None = None) -> tuple[OuterLoop, ObsNormalizer]:
    """The outer loop (with θ) and the observation normalizer of a run: fresh, or restored from a checkpoint's
    ``state``."""
    module, theta, normalizer = _outer_loop(cfg).network(cfg, family_of(cfg))
    learner = make_outer_loop(cfg, module, theta)
    if state is not None:
        learner.load_state_dict(state["learner"])
        normalizer.load_state_dict(state["normalizer"])
    return learner, normalizer
