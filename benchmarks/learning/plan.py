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
from meta.config import ALGOS, IN_CONTEXT, TrainConfig, from_dict, load_yaml

META_ALGOS = tuple(a for a in ALGOS if a != "multitask")  # multitask is a baseline, not a cell
DEFAULT_SPLITS = ("test", "ood")  # what a plan evaluates unless it says; it may ask any of HELD_OUT
REPORTED = ("test", "ood")
"""The splits the report's numbers come from: evaluated with the plan's report seeds where it reserves them (``val``
is for tuning, and keeps the run's seed)."""
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
    report_seeds: tuple[int, ...] = ()
    """Evaluation seeds reserved for reporting: the ``i``-th run seed of a (family, algo), in plan order, is evaluated
    on the reported splits (:data:`REPORTED`) with the ``i``-th of them, a draw of tasks no setting was chosen on.
    Empty (the default): every split is evaluated with the run's seed, the convention tuning runs follow too."""

    def config(self, split: str, seed: int) -> EvalConfig:
        return EvalConfig(split, self.n_tasks, self.steps, self.support_episodes, self.eval_episodes, (seed,))


@dataclass(frozen=True)
class FamilyPlan:
    headline: str
    """The algorithm whose cells the family's plot and videos show, and the first candidate of the headline table."""
    train_minutes: float
    """Estimated minutes of one training run (the cell's, or a trained baseline's) until one is measured."""
    eval_minutes: float
    """Estimated minutes of evaluating one method on one split until one is measured."""
    gradient: str = ""
    """The family's best gradient-based learner, whose within-trial curve is drawn beside the in-context learners'
    (the plan's ``gradient``; default: the headline)."""
    in_context: tuple[str, ...] = ()
    """The in-context learners shown beside it (the plan's ``in_context``; default: those among the family's
    cells)."""

    @property
    def candidates(self) -> tuple[str, ...]:
        """The learners the headline table picks the family's best from: headline, gradient, in-context ones."""
        return tuple(dict.fromkeys((self.headline, self.gradient or self.headline, *self.in_context)))


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
    report_seed: int | None = None
    """The evaluation seed of the reported splits (the plan's report seed for this run), or None: the run's seed."""

    @property
    def name(self) -> str:
        return f"{self.family}-{self.algo}-seed{self.seed}"

    def eval_seed(self, split: str) -> int:
        """The seed that draws the cell's tasks of ``split`` (and its episodes): the report seed on the reported
        splits where the plan reserves them, else the run's seed."""
        return self.report_seed if self.report_seed is not None and split in REPORTED else self.seed

    def eval_config(self, split: str) -> EvalConfig:
        """The protocol of the cell's evaluation of ``split``, with its seed."""
        return self.eval.config(split, self.eval_seed(split))

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
    families, family_train, family_baselines, learners = {}, {}, {}, {}
    for name, f in data["families"].items():
        where = f"families.{name}"
        if name not in FAMILIES:
            raise ValueError(f"{where} is not a family: expected one of {', '.join(FAMILIES)}")
        _keys(f, where, required=("headline", "minutes"), optional=("train", "baseline_settings", *LEARNERS))
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
        learners[name] = {k: f[k] for k in LEARNERS if k in f}

    if not isinstance(data["cells"], list) or not data["cells"]:
        raise ValueError(f"cells={data['cells']!r} is not allowed: expected a list of one or more cells")
    cells: list[Cell] = []
    planned: dict[str, str] = {}
    report_field: dict[str, str] = {}  # cell name → the field that gave its report seeds
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
                own = "report_seeds" in entry.get("eval", {})
                report_field[cell.name] = f"{where}.eval.report_seeds" if own else "eval.report_seeds"
                cells.append(cell)
    cells = _report_seeds(cells, report_field)

    for name, f in families.items():
        algos = {c.algo for c in cells if c.family == name}
        if f.headline not in algos:
            raise ValueError(
                f"families.{name}.headline={f.headline!r} is not allowed: expected an algo of the family's cells "
                f"({', '.join(sorted(algos)) or 'none'})"
            )
        families[name] = _learners(name, f, learners[name], algos)
    return Plan(path.stem, path, Path(data["out"]) if "out" in data else None, families, tuple(cells), notes)


LEARNERS = ("gradient", "in_context")  # a family's optional keys naming the learners the report sets side by side


def _learners(family: str, f: FamilyPlan, given: dict, algos: set[str]) -> FamilyPlan:
    """``f`` with its gradient and in-context learners: as the plan ``given`` them (checked against the family's
    cells' ``algos``), else the headline and the family's in-context cells."""
    where = f"families.{family}"
    gradient = given.get("gradient", f.headline)
    gradient_algos = sorted(a for a in algos if a not in IN_CONTEXT)
    if "gradient" in given and gradient not in gradient_algos:
        raise ValueError(
            f"{where}.gradient={gradient!r} is not allowed: expected a gradient-based algo of the family's cells "
            f"({', '.join(gradient_algos) or 'none'})"
        )
    present = [a for a in IN_CONTEXT if a in algos]
    in_context = given.get("in_context", present)
    if (
        not isinstance(in_context, list)
        or any(a not in present for a in in_context)
        or len(set(in_context)) < len(in_context)
    ):
        raise ValueError(
            f"{where}.in_context={in_context!r} is not allowed: expected a list of in-context algos of the family's "
            f"cells ({', '.join(present) or 'none'})"
        )
    return dataclasses.replace(f, gradient=gradient, in_context=tuple(in_context))


def _report_seeds(cells: list[Cell], field: dict[str, str]) -> list[Cell]:
    """``cells`` with their report seeds: the ``i``-th seed of a (family, algo) in plan order gets the ``i``-th of its
    ``report_seeds``. They must be as many as its seeds, and none may be a run seed of the plan (by the old
    convention, the evaluation seed of every tuning measurement)."""
    run_seeds = {c.seed for c in cells}
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.family, c.algo), []).append(c)
    out = {}
    for (family, algo), group in groups.items():
        seeds = group[0].eval.report_seeds
        if not seeds:
            continue
        where = field[group[0].name]
        if len(seeds) < len(group):
            raise ValueError(
                f"{where}={list(seeds)} is not allowed: {family} {algo} has {len(group)} seeds "
                f"({', '.join(str(c.seed) for c in group)}), expected a report seed for each"
            )
        taken = sorted(run_seeds.intersection(seeds))
        if taken:
            raise ValueError(
                f"{where}={list(seeds)} is not allowed: {', '.join(map(str, taken))} "
                f"{'is also a run seed' if len(taken) == 1 else 'are also run seeds'} of the plan, whose evaluations "
                "tuning used; expected seeds reserved for reporting"
            )
        out |= {c.name: dataclasses.replace(c, report_seed=s) for c, s in zip(group, seeds, strict=False)}
    return [out.get(c.name, c) for c in cells]


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
    if "report_seeds" in d:
        value = d["report_seeds"]
        integers = isinstance(value, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in value)
        if not integers or not value or min(value) < 0 or len(set(value)) < len(value):
            raise ValueError(
                f"{where}.report_seeds={value!r} is not allowed: expected a list of distinct integers ≥ 0 (a report "
                "seed for each run seed)"
            )
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
