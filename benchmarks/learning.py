"""The results matrix: meta-train and evaluate every cell of a plan, then write ``results.json`` and ``results.md``.

A plan (``benchmarks/plans/*.yaml``) lists cells: a family, one or more algorithms and seeds, with overrides of the
training config and of the few-shot protocol. Each (family, algo, seed) cell trains a run into
``RESULTS/<plan>/<family>-<algo>-seed<seed>/`` (a ``train.py`` run folder) and evaluates it on every split of the
plan against its baselines into ``<run>/eval/<split>/`` (``evaluate.py``'s ``eval.json``, ``eval.csv`` and
``adaptation.png``; the evaluation seed is the cell's seed). Everything is cached: an interrupted training resumes,
finished work is skipped, so the matrix fills over several sittings. Afterwards the finished cells are aggregated,
per (family, algo, split, method, k), over tasks × seeds into ``results.json``, and ``results.md`` is written from
those records, with one adaptation plot per family in ``img/``.

    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml --status   # done / partial / todo, time left
    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml            # run what is left, then report
    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml --only point cheetah   # some families now
    python -m benchmarks.learning --plan benchmarks/plans/headline.yaml --report   # report what is done, run nothing

Cores to spare: start the same command more than once. Each process holds the cell it works on (a lock beside the
run folder), and a process skips a cell another process holds, so the processes share out the cells.

A plan file:

    out: docs                  # where results.json, results.md and img/ go (default: RESULTS/<plan>)
    notes: headline-notes.md   # optional: Markdown beside the plan that results.md shows under "What mattered"
    eval:                      # the protocol of every cell; a cell's own `eval` overrides single keys
      n_tasks: 20              # tasks per seed
      steps: 3                 # K ≤ 3 inner steps ...
      support_episodes: 6      # ... each from this many fresh episodes per task: K × this ≤ 20
      eval_episodes: 10        # fresh episodes measuring each k
      splits: [test, ood]
      baselines: [scratch, multitask, sb3, oracle]
    families:
      point:
        headline: maml         # the algorithm the headline table shows
        minutes: {train: 1, eval: 0.3}   # until measured: one training run; evaluating one method on one split
        train: {iterations: 150}         # TrainConfig overrides of every point cell
        baseline_settings: {log_std_init: -1}   # optional: the trained baselines' own PPO settings
    cells:
      - {family: point, algo: [maml, reptile], seeds: [0, 1, 2], train: {inner_lr: 1.0}, eval: {baselines: []}}
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import fcntl
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from envs.files import atomic_path
from envs.registry import FAMILIES
from meta.config import ALGOS, TrainConfig, differences, family_of, from_dict, load_yaml, to_dict
from meta.evaluation import (
    BASELINES,
    METRICS,
    TRAINED_BASELINES,
    TRAINED_IN,
    EvalConfig,
    aggregate,
    baseline,
    baseline_config,
    config_dict,
    evaluate_methods,
    header,
    meta_method,
    plot,
    write_outputs,
)
from meta.trainer import FAMILY_RECORD, family_changes, load_run, read_checkpoint, run_config, train

META_ALGOS = tuple(a for a in ALGOS if a != "multitask")  # multitask is a baseline, not a cell
SPLITS = ("test", "ood")
MAX_STEPS, MAX_SUPPORT_EPISODES = 3, 20  # the targets: ≤ 3 inner steps from ≤ 20 support episodes in all
RECORD_KEYS = (
    "family",
    "algo",
    "split",
    "method",
    "k",
    "success_iqm",
    "success_ci_low",
    "success_ci_high",
    "success_mean",
    "return_iqm",
    "env_steps",
    "wall_clock_s",
    "seeds",
)
RESULTS = Path("results")  # where runs go by default: RESULTS/<plan>/<cell>/


# ---- the plan -------------------------------------------------------------------------------------------------------
class PlanError(ValueError):
    """A plan file that cannot be run: one line naming the file and the field."""


@dataclass(frozen=True)
class EvalSettings:
    """The few-shot protocol of a cell (:class:`meta.evaluation.EvalConfig` without the seeds, plus what to run)."""

    # evaluate.py's protocol, so a plan that says nothing measures what evaluate.py would
    n_tasks: int = EvalConfig.n_tasks
    steps: int = EvalConfig.steps
    support_episodes: int = EvalConfig.support_episodes
    eval_episodes: int = EvalConfig.eval_episodes
    splits: tuple[str, ...] = SPLITS
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
    """The family's trained baselines' own PPO settings over the run's (:func:`meta.evaluation.baseline_config`)."""

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
    """A mapping of the trained baselines' own settings, checked (:func:`meta.evaluation.baseline_config`)."""
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
        allowed = SPLITS if key == "splits" else tuple(BASELINES)
        value = d.get(key, getattr(base, key))
        if not isinstance(value, list | tuple) or any(v not in allowed for v in value) or len(set(value)) < len(value):
            raise ValueError(f"{where}.{key}={value!r} is not allowed: expected a list of {', '.join(allowed)}")
    if "splits" in d and not d["splits"]:
        raise ValueError(f"{where}.splits=[] is not allowed: expected test, ood or both")
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


# ---- the cells ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Training:
    """What a run folder's ``metrics.csv`` says: iterations done, env steps and the trainer's iteration time."""

    iterations: int = 0
    env_steps: int = 0
    seconds: float = 0.0


def training(folder: Path) -> Training:
    path = folder / "metrics.csv"
    if not path.is_file():
        return Training()
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return Training()
    seconds = sum(float(r["perf/iteration_s"]) for r in rows)
    return Training(int(rows[-1]["iteration"]), int(float(rows[-1]["env_steps"])), seconds)


def baseline_folder(run: Path, baseline: str, iterations: int) -> Path:
    """Where ``multitask_method`` / ``oracle_method`` cache a run's trained baseline."""
    return run / "eval" / f"{baseline}-{iterations}"


def cached(cell: Cell, run: Path, split: str) -> dict:
    """The split's ``eval.json`` if it was made under the cell's present protocol (its methods may be fewer or more
    than the plan now asks), else ``{}``."""
    path = run / "eval" / split / "eval.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    return results if results.get("config") == config_dict(cell.eval.config(split, cell.seed)) else {}


def unmeasured(cell: Cell, run: Path, results: dict) -> list[str]:
    """The methods the plan asks of the cell (its algo, then its baselines) that a split's :func:`cached` ``results``
    lack, or measured with a trained baseline the plan no longer has (:func:`stale`)."""
    measured, redo = results.get("methods", {}), stale(cell, run, results)
    return [m for m in (cell.algo, *cell.eval.baselines) if m not in measured or m in redo]


def stale(cell: Cell, run: Path, results: dict) -> set[str]:
    """The cell's trained baselines that a split's ``results`` measured with other baseline settings than the plan
    now asks (none recorded: none were given), or whose training run is gone: their measurements no longer stand."""
    trained = [b for b in cell.eval.baselines if b in TRAINED_IN]
    if results.get("baseline_settings", {}) != dict(cell.baseline_settings):
        return set(trained)
    return {
        b for b in trained if not (baseline_folder(run, TRAINED_IN[b], cell.train.iterations) / "config.yaml").is_file()
    }


def evaluated(cell: Cell, run: Path, split: str) -> dict | None:
    """The cell's cached evaluation of ``split``, if it measured every method the plan asks under its protocol."""
    results = cached(cell, run, split)
    if not results or unmeasured(cell, run, results):
        return None
    # A baseline the plan no longer asks of this cell was measured on the same tasks; it is left out, not redone.
    return {**results, "methods": {m: results["methods"][m] for m in (cell.algo, *cell.eval.baselines)}}


@dataclass(frozen=True)
class Progress:
    trained: Training
    baselines: dict[str, Training]
    """The trained baselines' runs (``multitask``, ``oracle``), as far as they got."""
    splits: tuple[str, ...]
    """Splits whose evaluation is cached."""
    unmeasured: dict[str, list[str]]
    """Per split, the methods its cache still lacks."""

    def state(self, cell: Cell) -> str:
        if self.trained.iterations >= cell.train.iterations and len(self.splits) == len(cell.eval.splits):
            return "done"
        started = self.trained.iterations or self.splits or any(b.iterations for b in self.baselines.values())
        return "partial" if started else "todo"


def progress(cell: Cell, run: Path) -> Progress:
    baselines = {
        b: training(baseline_folder(run, b, cell.train.iterations))
        for b in TRAINED_BASELINES
        if b in cell.eval.baselines
    }
    missing = {s: unmeasured(cell, run, cached(cell, run, s)) for s in cell.eval.splits}
    return Progress(training(run), baselines, tuple(s for s, m in missing.items() if not m), missing)


def check_run(cell: Cell, run: Path) -> None:
    """Refuse (one-line ``ValueError``) a run folder trained with another config than the plan now gives the cell, or
    on another version of its family (a changed reward, task range or model)."""
    if not (run / "config.yaml").is_file():
        return
    if not (run / FAMILY_RECORD).is_file():
        raise ValueError(
            f"{run} has no {FAMILY_RECORD}: the family it trained on is unknown; delete the folder to train it again"
        )
    changed = family_changes(run, cell.train)
    if changed:
        raise ValueError(
            f"{run} was trained on another version of the {cell.family} family (its {changed[0]} differs): "
            "delete the folder to train the cell again"
        )
    diff = differences(run_config(run), cell.train)
    if diff:
        field, was, now = diff[0]
        raise ValueError(
            f"{run} was trained with {field}={was!r} but the plan now says {now!r}: "
            "restore the plan, or delete the folder to train the cell again"
        )
    for trained in dict.fromkeys(TRAINED_IN[b] for b in cell.eval.baselines if b in TRAINED_IN):
        folder = baseline_folder(run, trained, cell.train.iterations)
        saved = (folder / "config.yaml").is_file()
        diff = differences(run_config(folder), cell.baseline_config(trained)) if saved else []
        if diff:
            field, was, now = diff[0]
            raise ValueError(
                f"{folder} holds a baseline trained with {field}={was!r} but the plan now says {now!r}: "
                "restore the plan, or delete the folder to train it again"
            )


@contextlib.contextmanager
def held(run: Path) -> Iterator[bool]:
    """Hold ``run`` for this process while the block runs; ``False`` when another process holds it. Two processes on
    one run would overwrite each other's checkpoints; the OS frees the lock when its process dies."""
    run.parent.mkdir(parents=True, exist_ok=True)
    with (run.parent / f".{run.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def run_cell(cell: Cell, run: Path) -> None:
    """Train the cell's run (or finish it), then evaluate every split not evaluated yet."""
    checkpoint = run / "checkpoints" / "latest.pt"
    if not checkpoint.is_file():
        if run.exists():
            shutil.rmtree(run)  # a run stopped before its first checkpoint: nothing to resume
        train(dataclasses.replace(cell.train, out=str(run)))
    elif read_checkpoint(run, "latest")[1]["iteration"] < cell.train.iterations:
        train(None, resume=str(run))
    for split in cell.eval.splits:
        if evaluated(cell, run, split) is None:
            evaluate_split(cell, run, split)


def evaluate_split(cell: Cell, run: Path, split: str) -> None:
    """``evaluate.py RUN --split SPLIT --seeds SEED --baselines ...`` with each method timed on its own; writes
    ``<run>/eval/<split>/`` with, beside evaluate.py's keys, ``eval_seconds`` and ``trained_in`` per method. A method
    the split's cached evaluation already measured under the same protocol is kept, not run again: every method
    draws its own episodes from the seed, so a baseline added to the plan is measured alone."""
    cfg, learner, normalizer = load_run(run)
    family = family_of(cfg)
    ec = cell.eval.config(split, cell.seed)
    old = cached(cell, run, split)
    results: dict = {"tasks": old.get("tasks", {}), "methods": old.get("methods", {})}
    seconds = old.get("eval_seconds", {})
    names = unmeasured(cell, run, old)
    settings = dict(cell.baseline_settings)
    methods = [
        meta_method(cfg, learner, normalizer) if n == cell.algo else baseline(n, run, cfg, cfg.iterations, settings)
        for n in names
    ]
    with tqdm(total=len(methods), desc=f"evaluate {cell.name} {split}", unit="method") as bar:
        for m in methods:
            began = time.perf_counter()
            one = evaluate_methods([m], family, ec)  # the tasks depend only on the seed: the same for every method
            seconds[m.name] = time.perf_counter() - began
            results["tasks"] = one["tasks"]
            results["methods"] |= one["methods"]
            bar.update(1)
    trained_in = {cell.algo: "."} | {
        b: str(baseline_folder(run, TRAINED_IN[b], cfg.iterations).relative_to(run))
        for b in cell.eval.baselines
        if b in TRAINED_IN
    }
    results = {
        **header(run, "latest", ec, cfg),
        "eval_seconds": seconds,
        "trained_in": trained_in,
        "baseline_settings": settings,
        **results,
    }
    write_outputs(results, run / "eval" / split, f"{cell.family} ({cell.algo}) seed {cell.seed} on {split} tasks")


# ---- status ---------------------------------------------------------------------------------------------------------
class Estimator:
    """Seconds of work left in a cell: measured on this machine where the family has finished work (seconds per
    training iteration, seconds to evaluate each method on one split), else the plan's per-family defaults."""

    def __init__(self, plan: Plan, runs: Path) -> None:
        self.plan = plan
        self.iteration_s: dict[str, list[float]] = {}  # family → [seconds, iterations] of every training run
        self.eval_s: dict[tuple[str, str], list[float]] = {}  # (family, method kind) → seconds of each evaluation
        for cell in plan.cells:
            run = runs / cell.name
            folders = [run] + [baseline_folder(run, b, cell.train.iterations) for b in TRAINED_BASELINES]
            total = self.iteration_s.setdefault(cell.family, [0.0, 0])
            for t in map(training, folders):
                total[0] += t.seconds
                total[1] += t.iterations
            for split in cell.eval.splits:
                results = evaluated(cell, run, split)
                for method, s in (results or {}).get("eval_seconds", {}).items():
                    self.eval_s.setdefault((cell.family, _kind(cell, method)), []).append(s)

    def training_left(self, cell: Cell, done: Training) -> float:
        left = max(cell.train.iterations - done.iterations, 0)
        seconds, iterations = self.iteration_s[cell.family]
        if iterations:
            return left * seconds / iterations
        return left / cell.train.iterations * self.plan.families[cell.family].train_minutes * 60

    def evaluation(self, cell: Cell, method: str) -> float:
        measured = self.eval_s.get((cell.family, _kind(cell, method)))
        return float(np.mean(measured)) if measured else self.plan.families[cell.family].eval_minutes * 60

    def left(self, cell: Cell, p: Progress) -> float:
        seconds = self.training_left(cell, p.trained)
        if len(p.splits) < len(cell.eval.splits):
            seconds += sum(self.training_left(cell, t) for t in p.baselines.values())
            seconds += sum(self.evaluation(cell, m) for methods in p.unmeasured.values() for m in methods)
        return seconds


def _kind(cell: Cell, method: str) -> str:
    return "meta" if method == cell.algo else method


def status(plan: Plan, runs: Path) -> list[str]:
    """One line per cell (state, iterations trained, splits evaluated, estimated time left) and a total."""
    estimator = Estimator(plan, runs)
    lines = [f"{'cell':28s} {'state':8s} {'trained':>11s}  {'evaluated':10s} {'left':>9s}"]
    counts = dict.fromkeys(("done", "partial", "todo"), 0)
    total = 0.0
    for cell in plan.cells:
        p = progress(cell, runs / cell.name)
        state = p.state(cell)
        counts[state] += 1
        left = 0.0 if state == "done" else estimator.left(cell, p)
        total += left
        trained = f"{min(p.trained.iterations, cell.train.iterations)}/{cell.train.iterations}"
        shown = "-" if state == "done" else _duration(left)
        lines.append(f"{cell.name:28s} {state:8s} {trained:>11s}  {' '.join(p.splits) or '-':10s} {shown:>9s}")
    lines.append(
        f"{counts['done']} done, {counts['partial']} partial, {counts['todo']} todo of {len(plan.cells)} cells: "
        f"about {_duration(total)} left on this machine ({_cores()} cores)"
    )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _cores() -> int:
    return len(os.sched_getaffinity(0))


# ---- aggregation ----------------------------------------------------------------------------------------------------
def collect_results(plan: Plan, runs: Path) -> dict[tuple[str, str, str], list[tuple[Cell, dict]]]:
    """Per (family, algo, split), the finished cells' evaluations of that split, in plan order."""
    out: dict[tuple[str, str, str], list[tuple[Cell, dict]]] = {}
    for (family, algo), cells in plan.groups().items():
        for split in SPLITS:
            done = []
            for cell in cells:
                run = runs / cell.name
                results = evaluated(cell, run, split) if split in cell.eval.splits else None
                if results is not None and training(run).iterations >= cell.train.iterations:
                    done.append((cell, results))
            if done:
                out[(family, algo, split)] = done
    return out


def summaries(evaluations: list[tuple[Cell, dict]]) -> dict[str, tuple[list[dict], list[int]]]:
    """Per method, :func:`meta.evaluation.aggregate` over the tasks of every cell that evaluated it, and those
    cells' seeds."""
    out = {}
    methods = dict.fromkeys(m for _, r in evaluations for m in r["methods"])
    for method in methods:
        with_it = [(c, r["methods"][method]) for c, r in evaluations if method in r["methods"]]
        curves = [{m: np.array(r["per_task"][m][0]) for m in METRICS} for _, r in with_it]
        out[method] = (aggregate(curves), [c.seed for c, _ in with_it])
    return out


def make_records(plan: Plan, runs: Path) -> list[dict]:
    """One record per (family, algo, split, method, k) over the finished cells (see the module docstring)."""
    records = []
    for (family, algo, split), evaluations in collect_results(plan, runs).items():
        for method, (rows, seeds) in summaries(evaluations).items():
            costs = np.array([_cost(runs / c.name, r, method) for c, r in evaluations if method in r["methods"]])
            train_steps, seconds, per_step = costs.mean(axis=0)  # per seed
            for row in rows:
                records.append(
                    {
                        "family": family,
                        "algo": algo,
                        "split": split,
                        "method": method,
                        "k": row["k"],
                        "success_iqm": row["success"]["iqm"],
                        "success_ci_low": row["success"]["iqm_ci_low"],
                        "success_ci_high": row["success"]["iqm_ci_high"],
                        "success_mean": row["success"]["mean"],
                        "return_iqm": row["return"]["iqm"],
                        "env_steps": round(float(train_steps + row["k"] * per_step)),
                        "wall_clock_s": round(float(seconds), 1),
                        "seeds": seeds,
                    }
                )
    return records


def _cost(run: Path, results: dict, method: str) -> tuple[int, float, float]:
    """``method``'s cost in one cell: the env steps of its training (0 for an untrained baseline), the seconds of
    that training and of evaluating this split, and the env steps of one task's adaptation per inner step."""
    trained = training(run / results["trained_in"][method]) if method in results["trained_in"] else Training()
    steps = results["config"]["steps"]
    adaptation = results["methods"][method]["adaptation_env_steps_per_task"] / steps if steps else 0.0
    return trained.env_steps, trained.seconds + results["eval_seconds"][method], adaptation


# ---- the report -----------------------------------------------------------------------------------------------------
def write_report(plan: Plan, runs: Path, out: Path, records: list[dict], command: str) -> None:
    """``results.json`` (the records), ``results.md`` (from the same records; ``command`` made them) and
    ``img/results-<family>.png``."""
    (out / "img").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")
    plots = {}
    evaluations = collect_results(plan, runs)
    for family, f in plan.families.items():
        splits = [s for s in SPLITS if (family, f.headline, s) in evaluations]
        path = out / "img" / f"results-{family}.png"
        if splits:
            plots[family] = path
            _plot_family(family, f.headline, {s: evaluations[(family, f.headline, s)] for s in splits}, path)
        else:
            path.unlink(missing_ok=True)  # a plot of cells since deleted would outlive the records it showed
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(markdown(plan, runs, records, {k: v.relative_to(out) for k, v in plots.items()}, command))


def _plot_family(family: str, algo: str, by_split: dict[str, list[tuple[Cell, dict]]], path: Path) -> None:
    """:func:`meta.evaluation.plot` of the headline algo and its baselines, one row per split, in one image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    with tempfile.TemporaryDirectory() as tmp:
        for split, evaluations in by_split.items():
            seeds = ", ".join(str(c.seed) for c, _ in evaluations)
            title = f"{family}: {algo} on {split} ({evaluations[0][0].eval.n_tasks} tasks × seeds {seeds})"
            every = [c.seed for c, _ in evaluations]
            lines = {
                m if seen == every else f"{m} (seed {', '.join(map(str, seen))})": rows
                for m, (rows, seen) in summaries(evaluations).items()
            }
            plot(lines, title, Path(tmp) / f"{split}.png")
            panels.append(plt.imread(Path(tmp) / f"{split}.png"))
    with atomic_path(path) as tmp:
        plt.imsave(tmp, np.concatenate(panels))  # one figure size: the panels are equally wide


def markdown(plan: Plan, runs: Path, records: list[dict], plots: dict[str, Path], command: str) -> str:
    """``results.md``: how the numbers were made, the headline table and plots, every record, and the commands."""
    import mujoco

    by = {(r["family"], r["algo"], r["split"], r["method"], r["k"]): r for r in records}
    lines = [
        "# Results: few-shot adaptation on held-out tasks",
        "",
        f"Generated by `{command}` on {datetime.date.today()} from `results.json` (every number on this page is "
        f"one of its records). Machine: {platform.machine()}, {_cores()} cores, torch {torch.__version__}, MuJoCo "
        f"{mujoco.__version__}, Python {platform.python_version()}.",
        "",
        "Protocol (`evaluate.py`): each cell of the plan is one meta-training run (family, algo, seed); on `n_tasks` "
        "tasks of each held-out split, sampled with the cell's seed, every method takes K inner steps, each from "
        "fresh support episodes, and is measured before the first step (k = 0) and after each on fresh evaluation "
        "episodes. Success is the fraction of evaluation episodes solved; numbers are the IQM over tasks × seeds "
        "with its 95 % bootstrap interval. The IQM leaves out the quarter of tasks with the lowest success and the "
        "quarter with the highest, so a kind of task that fails every time and makes up less than a quarter of the "
        "tasks does not show in it; the headline adds the mean over tasks × seeds (`success_mean` in "
        "`results.json`). Baselines at the same budget: `scratch` (a fresh network, the same inner "
        "loop), `multitask` (PPO on the train split for the run's env steps, then the same inner loop), `sb3` (SB3 "
        "PPO from scratch on each task with the same per-task env steps), `oracle` (`multitask` that sees the "
        "task's parameters: an upper bound, not meta-learning) and `search` (the oracle's policy told the task "
        "parameters that did best in the support episodes, one candidate per episode: strategy optimization, Yu et "
        "al. 2019; it never sees a held-out task's parameters). Env steps: the method's training plus one task's "
        "adaptation up to k; wall clock: training plus evaluating that split, per seed.",
        "",
        *_headline(plan, by),
        *(
            f"![{family}: return and success against inner steps k, a row per split]({path.as_posix()})\n"
            for family, path in plots.items()
        ),
        *(["## What mattered", "", plan.notes.read_text().strip(), ""] if plan.notes else []),
        *_full_table(plan, records, by),
        *_commands(plan, runs, command),
        *_videos(plan, runs),
    ]
    return "\n".join(lines)


def _headline(plan: Plan, by: dict[tuple, dict]) -> list[str]:
    baselines = ("multitask", "sb3", "search", "oracle", "scratch")  # what a user would pick instead, then bounds
    # The oracle sees the task, so it needs no adaptation: its upper bound is its success before any inner step.
    before = {"oracle"}
    named = [f"{b} (k = 0)" if b in before else b for b in baselines]
    columns = ["family", "algo", "split", "seeds", "pre (k = 0)", "post (k = K)", *named, "env steps", "wall clock"]
    lines = [
        "## Headline",
        "",
        "Success on each family's headline algorithm before adaptation (k = 0) and after K inner steps (IQM [95 % "
        "CI], then the mean), against every baseline after the same K steps (the oracle, which sees the task, "
        "before any); env steps and wall clock of the headline algorithm at k = K. The full table below says which "
        "seeds each method ran.",
        "",
        "| " + " | ".join(columns) + " |",
        "|---" * len(columns) + "|",
    ]
    groups = plan.groups()
    for family, f in plan.families.items():
        group = groups[(family, f.headline)]
        steps = group[0].eval.steps
        for split in SPLITS:
            post = by.get((family, f.headline, split, f.headline, steps))
            if post is None:
                continue
            shown = [
                *(_success(by.get((family, f.headline, split, f.headline, k)), with_mean=True) for k in (0, steps)),
                *(_success(by.get((family, f.headline, split, b, 0 if b in before else steps))) for b in baselines),
            ]
            algo, seeds = f"{f.headline}{_sim(group[0].train)}", _seeds(post["seeds"], group)
            cost = [f"{post['env_steps']:,}", _duration(post["wall_clock_s"])]
            lines.append("| " + " | ".join([family, algo, split, seeds, *shown, *cost]) + " |")
    return [*lines, ""]


def _full_table(plan: Plan, records: list[dict], by: dict[tuple, dict]) -> list[str]:
    max_k = max((r["k"] for r in records), default=0)
    header = ["family", "algo", "split", "method", "seeds", *(f"k = {k}" for k in range(max_k + 1))]
    lines = [
        "## Every algorithm and baseline",
        "",
        "Success IQM [95 % CI] after k inner steps; return IQM before → after K steps; env steps and wall clock at "
        "k = K.",
        "",
        "| " + " | ".join([*header, "return", "env steps", "wall clock"]) + " |",
        "|---" * (len(header) + 3) + "|",
    ]
    for (family, algo), group in plan.groups().items():
        for split in SPLITS:
            methods = dict.fromkeys(
                r["method"] for r in records if (r["family"], r["algo"], r["split"]) == (family, algo, split)
            )
            for method in methods:
                rows = [by.get((family, algo, split, method, k)) for k in range(max_k + 1)]
                last = [r for r in rows if r is not None][-1]
                first = [family, f"{algo}{_sim(group[0].train)}", split, method, _seeds(last["seeds"], group)]
                cost = [
                    f"{rows[0]['return_iqm']:.1f} → {last['return_iqm']:.1f}",
                    f"{last['env_steps']:,}",
                    _duration(last["wall_clock_s"]),
                ]
                lines.append("| " + " | ".join([*first, *map(_success, rows), *cost]) + " |")
    if not records:
        lines.append("No cell is finished yet.")
    return [*lines, ""]


def _commands(plan: Plan, runs: Path, command: str) -> list[str]:
    lines = [
        "## Commands and seeds",
        "",
        f"`{command}` runs every cell (`--status` says what is left); each is the same as these commands, for each "
        "seed S and split:",
        "",
    ]
    for (family, algo), group in plan.groups().items():
        cell, e = group[0], group[0].eval
        run = _shown(runs / f"{family}-{algo}-seedS")
        lines.append(
            f"- `{family}` `{algo}`, seeds {', '.join(str(c.seed) for c in group)}: "
            f"`python train.py {_train_flags(cell.train)} --seed S --out {run}`, then "
            f"`python evaluate.py {run} --split SPLIT --tasks {e.n_tasks} {_adaptation_flags(e)} "
            f"--eval-episodes {e.eval_episodes} --seeds S --baselines {' '.join(e.baselines)}"
            f"{_settings_flag(cell)}` "
            f"(splits: {', '.join(e.splits)})"
        )
    return [*lines, ""]


def _videos(plan: Plan, runs: Path) -> list[str]:
    """The command that renders each family's headline run before and after adaptation (mp4s are not kept)."""
    lines = [
        "## Videos",
        "",
        "Each family's headline run (its first seed) on 4 `test` tasks: the policy before adaptation beside the same "
        "policy after K inner steps, both acting with their mean action; a caption over each tile names the task's "
        "parameters and whether the episode succeeded. Each took under 3 minutes here (rendered offscreen; mp4s are "
        "not kept in git):",
        "",
    ]
    groups = plan.groups()
    for family, f in plan.families.items():
        cell = groups[(family, f.headline)][0]
        run, e = _shown(runs / cell.name), cell.eval
        lines.append(
            f"- `{family}`: `python evaluate.py {run} --split test {_adaptation_flags(e)} --seeds {cell.seed} "
            f"--video-only` writes `{run}/eval/test/adaptation.mp4`"
        )
    return [*lines, ""]


def _adaptation_flags(e: EvalSettings) -> str:
    """``evaluate.py`` flags of the plan's inner loop, which the evaluation and its videos share."""
    return f"--steps {e.steps} --support-episodes {e.support_episodes}"


def _settings_flag(cell: Cell) -> str:
    trained = any(b in TRAINED_IN for b in cell.eval.baselines)
    pairs = " ".join(f"{k}={v}" for k, v in cell.baseline_settings)
    return f" --baseline-settings {pairs}" if trained and pairs else ""


def _success(r: dict | None, with_mean: bool = False) -> str:
    if r is None:
        return "—"
    shown = f"{r['success_iqm']:.0%} [{r['success_ci_low']:.0%}, {r['success_ci_high']:.0%}]"
    return f"{shown}, mean {r['success_mean']:.0%}" if with_mean else shown


def _seeds(seeds: list[int], planned: list[Cell]) -> str:
    shown = ", ".join(map(str, seeds))
    return shown if len(seeds) == len(planned) else f"{shown} (of {len(planned)})"


def _sim(cfg: TrainConfig) -> str:
    return "" if cfg.backend == "cpu" else f" ({cfg.backend}, {cfg.device})"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (the commands are run from there)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _train_flags(cfg: TrainConfig) -> str:
    """``train.py`` flags giving ``cfg`` except its seed and out: family, algo and every non-default option."""
    default = to_dict(TrainConfig())
    flags = []
    for key, value in to_dict(cfg).items():
        if key in ("seed", "out") or (value == default[key] and key not in ("family", "algo")):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags.append(f"{flag} {' '.join(map(str, value)) if isinstance(value, list) else value}")
    return " ".join(flags)


# ---- command line ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.learning", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    p.add_argument("--plan", required=True, type=Path, metavar="PLAN.yaml", help="the plan: benchmarks/plans/*.yaml")
    p.add_argument("--results", type=Path, default=RESULTS, help="where runs go: RESULTS/<plan>/ (default results)")
    p.add_argument("--out", type=Path, help="where results.json, results.md and img/ go (default: the plan's out)")
    p.add_argument("--only", nargs="+", choices=list(FAMILIES), metavar="FAMILY", help="run only these families' cells")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="print every cell as done, partial or todo; run nothing")
    mode.add_argument("--report", action="store_true", help="write the report from the finished cells; run nothing")
    args = p.parse_args(argv)
    try:
        plan = load_plan(args.plan)
        runs = args.results / plan.name
        for cell in plan.cells:
            check_run(cell, runs / cell.name)
    except ValueError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    if args.status:
        print("\n".join(status(plan, runs)))
        return 0
    if not args.report:
        torch.set_num_threads(1)  # torch shares the cores with MuJoCo's thread pool (shared/FACTS.md)
        todo = [
            c
            for c in plan.cells
            if (args.only is None or c.family in args.only) and progress(c, runs / c.name).state(c) != "done"
        ]
        for cell in tqdm(todo, desc=f"plan {plan.name}", unit="cell"):
            with held(runs / cell.name) as mine:
                if mine:
                    run_cell(cell, runs / cell.name)
                else:
                    tqdm.write(f"{cell.name}: another process is running it; skipped")
    out = args.out or plan.out or runs
    records = make_records(plan, runs)
    command = " ".join(
        [p.prog, "--plan", _shown(args.plan)]
        + (["--results", _shown(args.results)] if args.results != RESULTS else [])
        + (["--out", _shown(args.out)] if args.out else [])
    )
    write_report(plan, runs, out, records, command)
    print(f"wrote {len(records)} records to {out / 'results.json'}, and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
