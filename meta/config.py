"""The configuration of one meta-training run, from defaults, a YAML file and command-line flags.

:class:`TrainConfig` is the single source: its field docstrings (the string literal under each field, as tyro
and CleanRL write them) are also the ``--help`` text, and :func:`parse_args` builds its flags from the fields
(:mod:`meta.flags`), so a new option is one new field. Values are checked once, in ``TrainConfig.__post_init__``,
whichever way they arrive; every refusal is a one-line ``ValueError`` naming the field and what is allowed.

Precedence: field defaults < ``--config FILE.yaml`` < flags given on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.inner_loop import CRITICS, InnerLoop
from agents.policy import ActorCritic
from agents.ppo import LossWeights
from envs.family import Family
from envs.files import atomic_path
from envs.oracle import OracleFamily
from envs.registry import FAMILIES, make_family
from envs.sim import SimSettings
from meta.flags import Parser, add_flags, flag, nearest

ALGOS = ("maml", "fomaml", "metasgd", "reptile", "rl2", "context", "multitask")
IN_CONTEXT = ("rl2", "context")
"""The learners that adapt without a gradient step: they train on trials of ``trial_episodes`` episodes."""
DISTRIBUTED = ("none", "ray")


@dataclass(frozen=True, eq=False)
class TrainConfig:
    """Everything that defines a meta-training run; a run folder's ``config.yaml`` holds one. Two configs are equal
    when they define the same run (as :func:`to_dict` writes them: an unset critic equals its algo's default)."""

    family: str = "door"
    """task family: grasp, terrain, door, point or cheetah"""
    algo: str = "maml"
    """meta-learner: maml, fomaml, metasgd, reptile (gradient steps adapt), rl2 (a recurrent policy's memory adapts),
    context (a task embedding inferred from transitions adapts), or multitask (plain PPO on all train tasks, a
    baseline)"""
    meta_batch: int = 10
    """tasks per meta-iteration"""
    envs_per_task: int = 8
    """parallel worlds per task: episodes of each support and query rollout (rl2, context: trials)"""
    inner_steps: int = 1
    """PPO gradient steps of adaptation per task"""
    inner_lr: float = 0.1
    """inner-loop step size (Meta-SGD's initial per-parameter step size)"""
    context_dim: int = 0
    """size of a task context the policy reads beside the observation and the inner loop adapts alone, the rest of θ
    only meta-learned (CAVIA, Zintgraf et al. 2019; maml, fomaml, metasgd); 0: no context, every parameter adapts"""
    context_lr: float = 1.0
    """inner-loop step size of the context (context_dim > 0); the baselines still adapt every parameter with
    inner_lr"""
    outer_lr: float = 0.003
    """Adam step size of the outer loop (maml, fomaml, metasgd; rl2's and context's PPO)"""
    reptile_epsilon: float = 0.5
    """Reptile's interpolation step ε in θ ← θ + ε·mean(φ − θ)"""
    iterations: int = 300
    """meta-iterations to train"""
    seed: int = 0
    """seed of task sampling, resets and policy noise"""
    backend: str = "cpu"
    """simulator: cpu (MuJoCo batch) or warp (MuJoCo Warp)"""
    device: str = "cpu"
    """cpu or cuda (cuda needs backend warp)"""
    distributed: str = "none"
    """none, or ray: split each meta-batch's tasks across Ray workers (needs the extra robometa[distributed])"""
    workers: int = 2
    """Ray workers, each rolling out and adapting a share of every meta-batch's tasks"""
    worker_cpus: int = 1
    """CPU cores each Ray worker reserves (its MuJoCo threads); with device cuda each also takes one GPU"""
    ray_address: str | None = None
    """address of a running Ray cluster (what `ray start --head` prints); default: start Ray on this machine"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden layer sizes of the policy and value MLPs"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE λ of the advantage estimate"""
    clip: float = 0.2
    """PPO ratio clip"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    bound_coef: float = 0.0
    """weight of a penalty on the action mean more than 2σ past the env's action bounds ±1, where nearly every sampled
    action is clipped alike and exploration stops (as rl_games' bounds loss)"""
    log_std_init: float = 0.0
    """initial log standard deviation of the policy's Gaussian action noise (as SB3's log_std_init); below 0 for
    tasks that need precise actions"""
    max_grad_norm: float = 1.0
    """outer gradient clip (global norm)"""
    critic: str | None = None
    """advantage baseline: linear (a least-squares fit to each task's own returns, refitted on every rollout, as in
    the MAML paper's code) or value (the policy's value head, meta-learned and adapted with it); default: linear for
    the gradient learners and multitask, value for rl2 and context"""
    memory: int = 128
    """rl2: units of the GRU memory"""
    trial_episodes: int = 4
    """rl2, context: episodes of one task per world and iteration, one after another, a memory (rl2) or the task's
    posterior (context) carrying across them"""
    bptt: int = 0
    """rl2: steps of backpropagation through the memory (truncated BPTT, chunks of the trial); 0: the whole trial"""
    gae_across_episodes: bool = True
    """rl2: advantages run across the episodes of a trial (RL²'s design: what an early episode finds out is credited
    with what later ones earn); off, they stop at each episode's end, as the context learner's do"""
    epochs: int = 4
    """rl2, context, multitask: PPO passes over each iteration's data (multitask: one full-batch step each)"""
    minibatches: int = 4
    """rl2, context: minibatches (of whole tasks) per pass"""
    latent: int = 8
    """context: size of the task embedding z"""
    kl_coef: float = 0.001
    """context: weight of the KL from each task's posterior to the prior N(0, I) (PEARL's information bottleneck;
    PEARL's 0.1 kept point's posterior from carrying the goal, pooled over a trial's thousands of transitions)"""
    task_loss_coef: float = 1.0
    """context: weight of predicting the task's parameters from z on train tasks (privileged, training only; the
    policy never sees them); 0: none"""
    normalize_obs: bool = True
    """normalize observations with running statistics"""
    task_in_obs: bool = False
    """append the task's parameters to the observation (the oracle baseline: an upper bound, not meta-learning)"""
    checkpoint_every: int = 50
    """also keep a checkpoint every N iterations (latest and best are always kept)"""
    out: str | None = field(default=None, metadata={"metavar": "RUN_DIR"})
    """run folder (default: runs/<family>-<algo>-seed<seed>-<timestamp>)"""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainConfig) and to_dict(self) == to_dict(other)

    def __hash__(self) -> int:
        return hash(json.dumps(to_dict(self)))

    @property
    def resolved_critic(self) -> str:
        """The advantage baseline this run trains with: ``critic``, or the algo's default (:func:`default_critic`).
        Left unset, ``critic`` follows the algo through ``dataclasses.replace``; a saved config records it resolved."""
        return self.critic or default_critic(self.algo)

    @property
    def sim(self) -> SimSettings:
        """The engine this run's worlds step in (its backend and device)."""
        return SimSettings(self.backend, self.device)

    def __post_init__(self) -> None:
        for name, allowed in (
            ("family", tuple(FAMILIES)),
            ("algo", ALGOS),
            ("distributed", DISTRIBUTED),
            ("critic", CRITICS),
        ):
            value = getattr(self, name)
            if value not in allowed and not (name == "critic" and value is None):
                raise ValueError(f"{name}={value!r} is not allowed: expected one of {', '.join(allowed)}")
        SimSettings(self.backend, self.device)  # the engine's own rule for a backend and device that go together

        for name in (
            "meta_batch",
            "envs_per_task",
            "inner_steps",
            "iterations",
            "checkpoint_every",
            "workers",
            "worker_cpus",
            "memory",
            "trial_episodes",
            "epochs",
            "minibatches",
            "latent",
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed: expected a positive integer")
        if not _is_int(self.context_dim) or self.context_dim < 0:
            raise ValueError(f"context_dim={self.context_dim!r} is not allowed: expected an integer ≥ 0")
        if not _is_int(self.bptt) or self.bptt < 0:
            raise ValueError(f"bptt={self.bptt!r} is not allowed: expected an integer ≥ 0 (0: the whole trial)")
        if self.context_dim and self.algo in ("reptile", "rl2", "context", "multitask"):
            # Reptile moves θ toward the adapted parameters and multitask adapts nothing while it trains: with
            # only the context adapting, neither would ever teach the policy to read it. RL² adapts no parameter.
            raise ValueError(
                f"context_dim={self.context_dim} is not allowed with algo={self.algo!r}: use maml, fomaml or metasgd"
            )
        if not _is_int(self.seed) or self.seed < 0:
            # numpy's Generator refuses negative seeds; refuse them here, before a run folder exists.
            raise ValueError(f"seed={self.seed!r} is not allowed: expected an integer ≥ 0")

        hidden = tuple(self.hidden) if isinstance(self.hidden, list | tuple) else self.hidden
        if not isinstance(hidden, tuple) or not hidden or not all(_is_int(h) and h >= 1 for h in hidden):
            raise ValueError(f"hidden={self.hidden!r} is not allowed: expected one or more positive integers")
        object.__setattr__(self, "hidden", hidden)

        for name, ok, expected in (
            ("inner_lr", lambda x: 0 < x < math.inf, "a finite number > 0"),
            ("context_lr", lambda x: 0 < x < math.inf, "a finite number > 0"),
            ("outer_lr", lambda x: 0 < x < math.inf, "a finite number > 0"),
            ("reptile_epsilon", lambda x: 0 < x < math.inf, "a finite number > 0"),
            ("gamma", lambda x: 0 < x <= 1, "a number in (0, 1]"),
            ("gae_lambda", lambda x: 0 <= x <= 1, "a number in [0, 1]"),
            ("clip", lambda x: 0 < x < math.inf, "a finite number > 0"),
            ("vf_coef", lambda x: 0 <= x < math.inf, "a finite number ≥ 0"),
            ("ent_coef", lambda x: 0 <= x < math.inf, "a finite number ≥ 0"),
            ("bound_coef", lambda x: 0 <= x < math.inf, "a finite number ≥ 0"),
            ("kl_coef", lambda x: 0 <= x < math.inf, "a finite number ≥ 0"),
            ("task_loss_coef", lambda x: 0 <= x < math.inf, "a finite number ≥ 0"),
            ("log_std_init", lambda x: -5 <= x <= 2, "a number in [-5, 2]"),
            # inf is allowed: clip_grad_norm_ with max_norm=inf leaves gradients unclipped.
            ("max_grad_norm", lambda x: x > 0, "a number > 0"),
        ):
            value = getattr(self, name)
            # The comparisons are False for NaN, so NaN is refused with the rest.
            if not _is_number(value) or not ok(value):
                raise ValueError(f"{name}={value!r} is not allowed: expected {expected}")
            object.__setattr__(self, name, float(value))

        if self.distributed == "ray" and self.workers > self.meta_batch:
            raise ValueError(
                f"workers={self.workers} is not allowed with meta_batch={self.meta_batch}: "
                "every worker needs at least one task"
            )
        if self.ray_address is not None and (not isinstance(self.ray_address, str) or not self.ray_address):
            raise ValueError(f"ray_address={self.ray_address!r} is not allowed: expected an address or nothing")

        for name in ("normalize_obs", "task_in_obs", "gae_across_episodes"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: expected true or false")
        if self.out is not None and (not isinstance(self.out, str) or not self.out):
            raise ValueError(f"out={self.out!r} is not allowed: expected a folder path or nothing")


def default_critic(algo: str) -> str:
    """The advantage baseline ``algo`` trains with unless told: the linear fit for gradient learners and multitask,
    whose inner steps need each task's own baseline; the value head for rl2 and context, whose value reads what the
    policy knows of the task (its memory or posterior) where a fit to the observation cannot."""
    return "value" if algo in IN_CONTEXT else "linear"


def _is_int(x: object) -> bool:
    # bool is an int subclass, but `meta_batch: true` in a YAML file is a mistake, not 1.
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def family_of(cfg: TrainConfig) -> Family:
    """The family a run trains and is evaluated on: ``cfg.family``, whose policy also sees the task's parameters
    when ``cfg.task_in_obs`` (the oracle baseline, :class:`envs.oracle.OracleFamily`)."""
    family = make_family(cfg.family)
    return OracleFamily(family) if cfg.task_in_obs else family


def steps_per_iteration(cfg: TrainConfig) -> int:
    """Env steps one meta-iteration of ``cfg`` takes: a support and a query episode in every world of every task
    (gradient learners, multitask), or a trial of ``trial_episodes`` episodes (rl2, context)."""
    episodes = cfg.trial_episodes if cfg.algo in IN_CONTEXT else 2
    return episodes * family_of(cfg).episode_length * cfg.meta_batch * cfg.envs_per_task


def loss_weights(cfg: TrainConfig) -> LossWeights:
    """The PPO loss's settings of ``cfg``."""
    return LossWeights(cfg.clip, cfg.vf_coef, cfg.ent_coef, cfg.bound_coef)


def inner_loop(cfg: TrainConfig, module: ActorCritic, second_order: bool = False) -> InnerLoop:
    """The inner loop ``cfg`` gives ``module``: ``cfg.inner_steps`` PPO steps with ``cfg``'s loss, critic, γ and λ,
    every parameter at ``cfg.inner_lr``, or, when the module reads a context (CAVIA), the context alone at
    ``cfg.context_lr``. A network without a context (the baselines) adapts every parameter with ``inner_lr``."""
    names = [name for name, _ in module.named_parameters()]
    rates = {"context": cfg.context_lr} if "context" in names else dict.fromkeys(names, cfg.inner_lr)
    critic = gradient_critic(cfg)
    return InnerLoop(module, loss_weights(cfg), critic, cfg.gamma, cfg.gae_lambda, cfg.inner_steps, rates, second_order)


def gradient_critic(cfg: TrainConfig) -> str:
    """The critic of gradient steps taken for ``cfg``'s run: its own, but an in-context learner's critic baselines its
    PPO over trials, so the gradient steps of its baselines (scratch's inner loop, multitask's PPO) take the gradient
    learners' default."""
    return default_critic("multitask") if cfg.algo in IN_CONTEXT else cfg.resolved_critic


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as plain JSON/YAML values (tuples become lists), in field order; the critic resolved, so that a saved
    run records what it trained with."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)} | {"critic": cfg.resolved_critic}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# What each annotation accepts from a YAML/JSON mapping, and the words for it in an error.
_EXPECTED: dict[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "tuple[int, ...]": (lambda v: isinstance(v, list | tuple) and all(_is_int(x) for x in v), "a list of integers"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
}


def _typed(d: Any, where: str) -> dict[str, Any]:
    """``d``'s entries as ``TrainConfig`` keyword arguments, after checking keys and value types."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping of option: value, not {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    kw: dict[str, Any] = {}
    for key, value in d.items():
        if key not in fields:
            close = nearest(key, fields)
            expected = f"did you mean {close!r}?" if close else f"expected one of {', '.join(fields)}"
            raise ValueError(f"{where}: unknown key {key!r}: {expected}")
        accepts, expected = _EXPECTED[str(fields[key].type)]
        if not accepts(value):
            raise ValueError(f"{where}: {key} must be {expected}, not {type(value).__name__} {value!r}")
        kw[key] = tuple(value) if isinstance(value, list) else value
    return kw


def from_dict(d: dict[str, Any], where: str) -> TrainConfig:
    """The config a mapping describes (missing keys take their defaults); ``where`` names its source in errors.

    Raises a one-line ``ValueError`` for an unknown key, a value of the wrong type or a value not allowed.
    """
    kw = _typed(d, where)
    try:
        return TrainConfig(**kw)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


SAVED_BEFORE = {"critic": "value"}
"""Fields whose default changed after run folders were written without them, and the value those runs used."""


def saved_config(d: dict[str, Any], where: str) -> TrainConfig:
    """The config a run folder or checkpoint saved: as :func:`from_dict`, but a field it predates takes the value it
    was trained with (:data:`SAVED_BEFORE`), not today's default."""
    return from_dict({**SAVED_BEFORE, **d}, where)


def differences(a: TrainConfig, b: TrainConfig) -> list[tuple[str, Any, Any]]:
    """``(field, value in a, value in b)`` for each field in which two configs differ, by field name. ``out`` is
    left out: it says where a run lives, not what it is, so a run folder moved or copied elsewhere is the same run."""
    da, db = to_dict(a), to_dict(b)
    return [(k, da[k], db[k]) for k in sorted(da) if k != "out" and da[k] != db[k]]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent, so ``inner_lr: 1e-3`` would be
    the string ``'1e-3'``; YAML 1.2 and every other reader take it as a number.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (an empty file is an empty mapping).

    Raises a one-line ``ValueError`` naming the file when it is missing, unreadable, not YAML or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"config file {path} cannot be read: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"config file {path} is not valid YAML: {problem}{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of option: value, not a {type(data).__name__}")
    return data


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    """Write ``cfg`` to ``path`` as YAML that :func:`load_yaml` and :func:`from_dict` read back unchanged, whole or
    not at all (a resumed run rewrites its ``config.yaml``, and a stop then must not cut it)."""
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))


PROGRESS = (
    "The progress bar shows the iterations done, the time elapsed and the time left at the pace so far, then the "
    "last iteration's mean return and success before adapting (θ's own episodes; rl2, context: each trial's first "
    "episode) and after adapting (the adapted policies' episodes; rl2, context: each trial's last), as metrics.csv "
    "logs them in rollout/pre_* and rollout/post_*, and the env steps simulated per second. Ctrl-C stops a run at "
    "its last complete iteration, to be continued with --resume RUN_DIR."
)
"""What ``train.py``'s progress bar shows, for its ``--help``."""


@dataclass(frozen=True)
class Resume:
    """``train.py --resume RUN_DIR [--iterations N]``: continue a run with its saved config, to ``N`` iterations in
    all when given (training it longer than it was started for)."""

    run: str
    iterations: int | None = None


def build_parser() -> Parser:
    """The ``train.py`` parser: one flag per :class:`TrainConfig` field (:func:`meta.flags.add_flags`), plus
    ``--config`` and ``--resume``."""
    p = Parser(
        prog="train.py",
        description="Meta-train a policy on a robometa task family (maml, fomaml, metasgd, reptile, rl2, context, or "
        "the multitask baseline).",
        epilog=f"Precedence: field defaults < --config FILE.yaml < flags given on the command line. {PROGRESS}",
        allow_abbrev=False,  # --inner-lr/--inner-steps: prefixes would be ambiguous or silently pick one
    )
    p.add_argument("--config", metavar="FILE.yaml", help="take option values from this YAML file")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint, with its saved config.yaml; the only other flag "
        "it takes is --iterations N, to train it longer (N iterations in all)",
    )
    add_flags(p, TrainConfig)
    return p


def parse_args(argv: list[str] | None = None) -> TrainConfig | Resume:
    """The new run's config or, with ``--resume RUN_DIR``, the run to continue.

    Whether ``RUN_DIR`` is a run, and whether ``--iterations`` goes past what it has done, is the trainer's to say
    (it reads the run). Any invalid value exits with status 2 and a one-line ``train.py: error: ...`` on stderr.
    """
    p = build_parser()
    args = vars(p.parse_args(argv))
    config, resume = args.pop("config"), args.pop("resume")
    try:
        if resume is not None:
            given = [*(["config"] if config is not None else []), *(k for k in args if k != "iterations")]
            if given:
                raise ValueError(
                    f"--resume continues a run with its saved config: drop {flag(given[0])} "
                    "(--iterations N is the one flag it takes, to train longer)"
                )
            iterations = args.get("iterations")
            if iterations is not None:
                TrainConfig(iterations=iterations)  # refuses what no run could train to, as for a new run
            return Resume(resume, iterations)
        kw = _typed(load_yaml(config), where=config) if config is not None else {}
        kw.update({k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
        return TrainConfig(**kw)
    except ValueError as e:
        p.error(str(e))
