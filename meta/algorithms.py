"""The outer loops by name, and a run's learner built fresh or from a checkpoint."""

from __future__ import annotations

from agents.normalizer import ObsNormalizer
from agents.policy import ActorCritic, Params, init_params
from meta.config import ALGOS, TrainConfig, family_of
from meta.maml import FOMAML, MAML, MetaSGD, MultiTask
from meta.outer_loop import OuterLoop
from meta.reptile import Reptile

OUTER_LOOPS: dict[str, type[OuterLoop]] = {
    "maml": MAML,
    "fomaml": FOMAML,
    "metasgd": MetaSGD,
    "reptile": Reptile,
    "multitask": MultiTask,
}
"""Each of :data:`meta.config.ALGOS` and its outer loop."""


def make_outer_loop(cfg: TrainConfig, module: ActorCritic, theta: Params) -> OuterLoop:
    """The outer loop ``cfg.algo`` names: maml, fomaml, metasgd, reptile, or the multitask baseline."""
    if cfg.algo not in OUTER_LOOPS:
        raise ValueError(f"algo={cfg.algo!r} is not allowed: expected one of {', '.join(ALGOS)}")
    return OUTER_LOOPS[cfg.algo](module, theta, cfg)


def build(cfg: TrainConfig, state: dict | None = None) -> tuple[OuterLoop, ObsNormalizer]:
    """The outer loop (with θ) and the observation normalizer of a run: fresh, or restored from a checkpoint's
    ``state``."""
    family = family_of(cfg)
    module = ActorCritic(family.obs_dim, family.action_dim, cfg.hidden, cfg.context_dim)
    learner = make_outer_loop(cfg, module, init_params(module, cfg.seed, cfg.log_std_init))
    normalizer = ObsNormalizer(family.obs_dim, cfg.normalize_obs)
    if state is not None:
        learner.load_state_dict(state["learner"])
        normalizer.load_state_dict(state["normalizer"])
    return learner, normalizer
