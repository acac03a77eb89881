"""The plan file: its schema (a :class:`Plan` of cells, :class:`Cell`, each with its :class:`EvalSettings`, and a
:class:`FamilyPlan` per family) and :func:`load_plan`, which checks every field and names the first bad one in one
line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.family import HELD_OUT
from envs.registry import FAMILIES
from evaluation.baselines import BASELINES, baseline_config
from evaluation.protocol import EvalConfig
from meta.config import ALGOS, TrainConfig, from_dict, load_yaml

META_ALGOS = tuple(a for a in ALGOS if a != "multitask")  # multitask is a baseline, not a cell
DEFAULT_SPLITS = ("test", "ood")  # what a plan evaluates unless it says; it may ask any of HELD_OUT
MAX_STEPS, MAX_SUPPORT_EPISODES = 3, 20  # the targets: ≤ 3 inner steps from ≤ 20 support episodes in all


class PlanError(ValueError):
    """A plan file that cannot be run: one line naming the file and the field."""


@dataclass(frozen=True)
class EvalSettings:
    """The few-shot protocol of a cell (:class:`evaluation.protocol.EvalConfig` without the seeds, plus what to
    run)."""

    # evaluate.py's protocol, so a plan that says nothing measures what evaluate.py would
    n_tasks: int = EvalConfig.n_tasks
    steps: int = EvalConfig.steps
    support_episodes: int = EvalConfig.support_episodes
    eval_episodes: int = EvalConfig.eval_episodes
    splits: tuple[str, ...] = DEFAULT_SPLITS
    baselines: tuple[str, ...] = tuple(BASELINES)

    def config(self, split: str, seed: int) -> EvalConfig:
        return EvalConfig(split, self.n_tasks, self.steps, self.support_episodes, self.eval_episodes, (seed,))


@dataclass(frozen=True)
class FamilyPlan:
    headline: str
    """The algorithm whose cells the headline table shows."""
    train_minutes: float
    """Estimated minutes of one training run (the cell's, or a trained baseline's) until one is measured."""
    eval_minutes: float
    """Estimated minutes of evaluating one method on one split until one is measured."""


@dataclass(frozen=True)
class Cell:
    family: str
    algo: str
    seed: int
    train: TrainConfig
    """The run's config (``out`` unset: the folder depends on where results go)."""
    eval: EvalSettings
    baseline_settings: tuple[tuple[str, float], ...] = ()
    """The family's trained baselines' own PPO settings over the run's
    (:func:`evaluation.baselines.baseline_config`)."""

    @property
    def name(self) -> str:
        return f"{self.family}-{self.algo}-seed{self.seed}"

    def baseline_config(self, trained: str) -> TrainConfig:
        """The config of the cell's trained baseline ``trained`` (``multitask`` or ``oracle``)."""
        return baseline_config(self.train, trained, self.train.iterations, dict(self.baseline_settings))


@dataclass(frozen=True)
class Plan:
    name: str
    """The plan file's stem: its runs go to ``RESULTS/<name>/``."""
    path: Path
    out: Path | None
    families: dict[str, FamilyPlan]
    cells: tuple[Cell, ...]
    notes: Path | None = None
    """Markdown that ``results.md`` shows under "What mattered": the tuning runs and what they found."""

    def groups(self) -> dict[tuple[str, str], list[Cell]]:
        """The cells of each (family, algo), in plan order: what one record aggregates over."""
        out: dict[tuple[str, str], list[Cell]] = {}
        for c in self.cells:
            out.setdefault((c.family, c.algo), []).append(c)
        return out


def load_plan(path: str | Path) -> Plan:
    """The plan in YAML file ``path``; raises a one-line :class:`PlanError` naming the field for bad input."""
    path = Path(path)
    try:
        data = load_yaml(path)
    except ValueError as e:
        raise PlanError(str(e).replace("config file", "plan")) from None
    try:
        return _parse(path, data)
    except ValueError as e:
        raise PlanError(f"plan {path}: {e}") from None


def _parse(path: Path, data: dict) -> Plan:
    _keys(data, "plan", required=("families", "cells"), optional=("out", "eval", "notes"))
    if "out" in data and (not isinstance(data["out"], str) or not data["out"]):
        raise ValueError(f"out={data['out']!r} is not allowed: expected a folder path")
    notes = None
    if "notes" in data:
        notes = path.parent / str(data["notes"])
        if not isinstance(data["notes"], str) or not notes.is_file():
            raise ValueError(f"notes={data['notes']!r} is not allowed: expected a Markdown file beside the plan")
    default_eval = _eval(EvalSettings(), data.get("eval", {}), "eval")

    _keys(data["families"], "families")
    families, family_train, family_baselines = {}, {}, {}
    for name, f in data["families"].items():
        where = f"families.{name}"
        if name not in FAMILIES:
            raise ValueError(f"{where} is not a family: expected one of {', '.join(FAMILIES)}")
        _keys(f, where, required=("headline", "minutes"), optional=("train", "baseline_settings"))
        _keys(f["minutes"], f"{where}.minutes", required=("train", "eval"))
        minutes = {}
        for k in ("train", "eval"):
            v = f["minutes"][k]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < float("inf"):
                raise ValueError(f"{where}.minutes.{k}={v!r} is not allowed: expected a number of minutes > 0")
            minutes[k] = float(v)
        family_train[name] = _train_overrides(f.get("train", {}), f"{where}.train")
        family_baselines[name] = _baseline_settings(f.get("baseline_settings", {}), f"{where}.baseline_settings")
        families[name] = FamilyPlan(f["headline"], minutes["train"], minutes["eval"])

    if not isinstance(data["cells"], list) or not data["cells"]:
        raise ValueError(f"cells={data['cells']!r} is not allowed: expected a list of one or more cells")
    cells: list[Cell] = []
    planned: dict[str, str] = {}
    for i, entry in enumerate(data["cells"]):
        where = f"cells[{i}]"
        _keys(entry, where, required=("family", "algo", "seeds"), optional=("train", "eval"))
        family = entry["family"]
        if family not in families:
            raise ValueError(f"{where}.family={family!r} is not allowed: expected a family under families")
        algos = [entry["algo"]] if isinstance(entry["algo"], str) else entry["algo"]
        if not isinstance(algos, list) or not algos or any(a not in META_ALGOS for a in algos):
            raise ValueError(
                f"{where}.algo={entry['algo']!r} is not allowed: expected one or a list of {', '.join(META_ALGOS)}"
            )
        seeds = entry["seeds"]
        integers = isinstance(seeds, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        if not integers or not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
            raise ValueError(f"{where}.seeds={seeds!r} is not allowed: expected a list of distinct integers ≥ 0")
        overrides = {**family_train[family], **_train_overrides(entry.get("train", {}), f"{where}.train")}
        settings = _eval(default_eval, entry.get("eval", {}), f"{where}.eval")
        for algo in algos:
            for seed in seeds:
                cfg = from_dict({**overrides, "family": family, "algo": algo, "seed": seed}, where=f"{where}.train")
                cell = Cell(family, algo, seed, cfg, settings, family_baselines[family])
                if cell.name in planned:
                    raise ValueError(f"{where}: {cell.name} is already planned by {planned[cell.name]}")
                first = next((c for c in cells if (c.family, c.algo) == (family, algo)), cell)
                # Which baselines run may differ between seeds (an oracle on one seed only); the protocol may not.
                protocol = dataclasses.replace(first.eval, baselines=settings.baselines)
                if (protocol, dataclasses.replace(first.train, seed=seed)) != (cell.eval, cfg):
                    raise ValueError(
                        f"{where}: {cell.name} has other train or eval settings than {first.name} of "
                        f"{planned[first.name]}, but the seeds of a family and algo are aggregated together"
                    )
                planned[cell.name] = where
                cells.append(cell)

    for name, f in families.items():
        algos = {c.algo for c in cells if c.family == name}
        if f.headline not in algos:
            raise ValueError(
                f"families.{name}.headline={f.headline!r} is not allowed: expected an algo of the family's cells "
                f"({', '.join(sorted(algos)) or 'none'})"
            )
    return Plan(path.stem, path, Path(data["out"]) if "out" in data else None, families, tuple(cells), notes)


def _keys(d: Any, where: str, required: tuple[str, ...] = (), optional: tuple[str, ...] | None = None) -> None:
    """Check that ``d`` is a mapping with every ``required`` key and (unless ``optional`` is None) no others."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping, not {type(d).__name__} {d!r}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{where}.{missing[0]} is missing")
    if optional is not None:
        unknown = [k for k in d if k not in (*required, *optional)]
        if unknown:
            raise ValueError(f"{where}.{unknown[0]} is not a key here: expected {', '.join((*required, *optional))}")


def _train_overrides(d: Any, where: str) -> dict:
    """A mapping of ``TrainConfig`` overrides; the cell itself says family, algo, seed and (by its name) out."""
    _keys(d, where)
    for key in ("family", "algo", "seed", "out"):
        if key in d:
            raise ValueError(f"{where}.{key} is not allowed here: the cell sets it")
    from_dict(d, where=where)  # names the field of an unknown key or a bad value now, not when the cell runs
    return d


def _baseline_settings(d: Any, where: str) -> tuple[tuple[str, float], ...]:
    """A mapping of the trained baselines' own settings, checked (:func:`evaluation.baselines.baseline_config`)."""
    _keys(d, where)
    try:
        baseline_config(TrainConfig(), "multitask", 1, d)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return tuple(d.items())


def _eval(base: EvalSettings, d: Any, where: str) -> EvalSettings:
    """``base`` with the keys of mapping ``d`` replaced, checked."""
    _keys(d, where, optional=tuple(f.name for f in dataclasses.fields(EvalSettings)))
    for key in ("splits", "baselines"):
        allowed = HELD_OUT if key == "splits" else tuple(BASELINES)
        value = d.get(key, getattr(base, key))
        if not isinstance(value, list | tuple) or any(v not in allowed for v in value) or len(set(value)) < len(value):
            raise ValueError(f"{where}.{key}={value!r} is not allowed: expected a list of {', '.join(allowed)}")
    if "splits" in d and not d["splits"]:
        raise ValueError(f"{where}.splits=[] is not allowed: expected one or more of {', '.join(HELD_OUT)}")
    if "search" in d.get("baselines", ()) and "oracle" not in d["baselines"]:
        raise ValueError(
            f"{where}.baselines: search is not allowed without oracle (it searches with the oracle's policy)"
        )
    settings = dataclasses.replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    try:
        settings.config("test", 0)  # EvalConfig's own checks of the numbers
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if settings.steps > MAX_STEPS:
        raise ValueError(f"{where}.steps={settings.steps} is not allowed: expected at most {MAX_STEPS}")
    if settings.steps * settings.support_episodes > MAX_SUPPORT_EPISODES:
        raise ValueError(
            f"{where}.support_episodes={settings.support_episodes} is not allowed with steps={settings.steps}: "
            f"expected steps × support_episodes ≤ {MAX_SUPPORT_EPISODES} (support episodes per task in all)"
        )
    return settings
