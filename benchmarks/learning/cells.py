"""Running and caching a plan's cells: how far a cell got (:func:`progress`), which of its evaluations stand
(:func:`evaluated`), the refusal of a run folder the plan no longer describes (:func:`check_run`), the lock that
shares the cells out between processes (:func:`held`), running a cell (:func:`run_cell`), the estimate of what is
left (:func:`status`) and what a cell took (:func:`process_seconds`)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.learning.plan import Cell, Plan
from evaluation.baselines import TRAINED_BASELINES, TRAINED_IN, baseline
from evaluation.outputs import header, write_outputs
from evaluation.protocol import AdaptedMethod, config_dict, evaluate_methods
from meta.config import family_of, steps_per_iteration
from meta.runs import (
    FAMILY_RECORD,
    RunFolder,
    Training,
    check_config,
    check_family,
    duration,
    load_run,
    read_checkpoint,
    training,
)
from meta.trainer import train

PLAN_CHANGED = "the plan now says"


def eval_json(run: Path, split: str) -> Path:
    """The split's ``eval.json`` in the run folder ``run``."""
    return RunFolder(run).evaluation(split) / "eval.json"


def read_eval(run: Path, split: str) -> dict:
    """The split's ``eval.json`` in the run folder ``run`` under whatever protocol it was made, else ``{}``."""
    path = eval_json(run, split)
    return json.loads(path.read_text()) if path.is_file() else {}


def cached(cell: Cell, run: Path, split: str) -> dict:
    """The split's ``eval.json`` if it was made under the cell's present protocol (its methods may be fewer or more
    than the plan now asks), else ``{}``."""
    results = read_eval(run, split)
    return results if results.get("config") == config_dict(cell.eval_config(split)) else {}


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
    folder = RunFolder(run)
    return {b for b in trained if not RunFolder(folder.baseline(TRAINED_IN[b], cell.train.iterations)).config.is_file()}


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
    folder = RunFolder(run)
    baselines = {
        b: training(folder.baseline(b, cell.train.iterations)) for b in TRAINED_BASELINES if b in cell.eval.baselines
    }
    missing = {s: unmeasured(cell, run, cached(cell, run, s)) for s in cell.eval.splits}
    return Progress(training(run), baselines, tuple(s for s, m in missing.items() if not m), missing)


def check_run(cell: Cell, run: Path) -> None:
    """Refuse (one-line ``ValueError``) a run folder trained with another config than the plan now gives the cell, or
    on another version of its family (a changed reward, task range or model); so too a trained baseline in it
    trained with other settings than the plan now gives."""
    folder = RunFolder(run)
    if not folder.config.is_file():
        return
    if not folder.family_record.is_file():
        raise ValueError(
            f"{run} has no {FAMILY_RECORD}: the family it trained on is unknown; delete the folder to train it again"
        )
    check_family(run, cell.train, "delete the folder to train the cell again")
    check_config(run, cell.train, PLAN_CHANGED, "restore the plan, or delete the folder to train the cell again")
    for trained in dict.fromkeys(TRAINED_IN[b] for b in cell.eval.baselines if b in TRAINED_IN):
        done = folder.baseline(trained, cell.train.iterations)
        if RunFolder(done).config.is_file():
            advice = "restore the plan, or delete the folder to train the baseline again"
            check_config(done, cell.baseline_config(trained), PLAN_CHANGED, advice)


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
    if not RunFolder(run).checkpoint("latest").is_file():
        if run.exists():
            shutil.rmtree(run)  # a run stopped before its first checkpoint: nothing to resume
        train(dataclasses.replace(cell.train, out=str(run)))
    elif read_checkpoint(run, "latest")[1]["iteration"] < cell.train.iterations:
        train(None, resume=str(run))
    for split in cell.eval.splits:
        if evaluated(cell, run, split) is None:
            evaluate_split(cell, run, split)


def evaluate_split(cell: Cell, run: Path, split: str) -> None:
    """``evaluate.py RUN --split SPLIT --seeds SEED --baselines ...`` (``SEED``: :meth:`Cell.eval_seed`) with each
    method timed on its own; writes ``<run>/eval/<split>/`` with, beside evaluate.py's keys, ``eval_seconds`` and
    ``trained_in`` per method. A method the split's cached evaluation already measured under the same protocol is
    kept, not run again: every method draws its own episodes from the seed, so a baseline added to the plan is
    measured alone."""
    cfg, learner, normalizer = load_run(run)
    family = family_of(cfg)
    ec = cell.eval_config(split)
    old = cached(cell, run, split)
    results: dict = {"tasks": old.get("tasks", {}), "methods": old.get("methods", {})}
    seconds = old.get("eval_seconds", {})
    names = unmeasured(cell, run, old)
    settings = dict(cell.baseline_settings)
    methods = [
        AdaptedMethod.of(cfg.algo, learner, normalizer)
        if n == cell.algo
        else baseline(n, run, cfg, cfg.iterations, settings)
        for n in names
    ]
    with tqdm(total=len(methods), desc=f"evaluate {cell.name} {split}", unit="method") as bar:
        for m in methods:
            began = time.perf_counter()
            # the tasks depend only on the seed: the same for every method
            one = evaluate_methods([m], family, ec, cfg.sim)
            seconds[m.name] = time.perf_counter() - began
            results["tasks"] = one["tasks"]
            results["methods"] |= one["methods"]
            bar.update(1)
    folder = RunFolder(run)
    trained_in = {cell.algo: "."} | {
        b: str(folder.baseline(TRAINED_IN[b], cfg.iterations).relative_to(run))
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
    title = f"{cell.family} ({cell.algo}) seed {cell.seed} on {split} tasks"
    write_outputs(results, folder.evaluation(split), title)


# ---- what is left ---------------------------------------------------------------------------------------------------
class Estimator:
    """Seconds of work left in a cell: measured on this machine where there is finished work (seconds per env step
    of training the family's algo, or its trained baseline; seconds per task to evaluate each method on one split,
    under any protocol), else the family's pace over its other runs, else the plan's per-family defaults. Per env
    step, not per iteration: a baseline trained at an in-context run's budget takes as many env steps as the run,
    in iterations of another size."""

    def __init__(self, plan: Plan, runs: Path) -> None:
        self.plan = plan
        self.step_s: dict[tuple[str, str], list[float]] = {}  # (family, algo or baseline) → [seconds, env steps]
        self.eval_s: dict[tuple[str, str], list[float]] = {}  # (family, method kind) → seconds per task, each eval
        for cell in plan.cells:
            run = runs / cell.name
            folders = {cell.algo: run} | {
                b: RunFolder(run).baseline(b, cell.train.iterations) for b in TRAINED_BASELINES
            }
            for name, folder in folders.items():
                t = training(folder)
                total = self.step_s.setdefault((cell.family, name), [0.0, 0])
                total[0] += t.seconds
                total[1] += t.env_steps
            for split in cell.eval.splits:
                results = read_eval(run, split)
                for method, s in results.get("eval_seconds", {}).items():
                    per_task = s / (results["config"]["n_tasks"] * len(results["config"]["seeds"]))
                    self.eval_s.setdefault((cell.family, _kind(cell, method)), []).append(per_task)

    def training_left(self, cell: Cell, done: Training, name: str) -> float:
        """Seconds left to train ``name`` (the cell's algo or a trained baseline: as many env steps) from ``done``."""
        budget = cell.train.iterations * steps_per_iteration(cell.train)
        left = max(budget - done.env_steps, 0)
        own = self.step_s.get((cell.family, name), [0.0, 0])
        family = np.sum([v for (f, _), v in self.step_s.items() if f == cell.family], axis=0)
        for seconds, steps in (own, family):
            if steps:
                return left * seconds / steps
        return left / budget * self.plan.families[cell.family].train_minutes * 60

    def evaluation(self, cell: Cell, method: str) -> float:
        measured = self.eval_s.get((cell.family, _kind(cell, method)))
        if measured:
            return float(np.mean(measured)) * cell.eval.n_tasks  # a cell evaluates one seed
        return self.plan.families[cell.family].eval_minutes * 60

    def left(self, cell: Cell, p: Progress) -> float:
        seconds = self.training_left(cell, p.trained, cell.algo)
        if len(p.splits) < len(cell.eval.splits):
            seconds += sum(self.training_left(cell, t, b) for b, t in p.baselines.items())
            seconds += sum(self.evaluation(cell, m) for methods in p.unmeasured.values() for m in methods)
        return seconds


def _kind(cell: Cell, method: str) -> str:
    return "meta" if method == cell.algo else method


def status(plan: Plan, runs: Path) -> list[str]:
    """One line per cell (state, iterations trained, splits evaluated, estimated time left) and a total: the time
    left, one process at a time, which is also the process-hours the cells not done will take."""
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
        shown = "-" if state == "done" else duration(left)
        lines.append(f"{cell.name:28s} {state:8s} {trained:>11s}  {' '.join(p.splits) or '-':10s} {shown:>9s}")
    left = counts["partial"] + counts["todo"]
    lines.append(
        f"{counts['done']} done, {counts['partial']} partial, {counts['todo']} todo of {len(plan.cells)} cells: "
        f"about {duration(total)} left on this machine ({cores()} cores), one process at a time; "
        f"{total / 3600:.1f} process-hours in the {left} {'cell' if left == 1 else 'cells'} not done"
    )
    return lines


def process_seconds(cell: Cell, run: Path) -> float:
    """The seconds of one process the cell has taken so far: the training of its run and of its trained baselines
    (``metrics.csv``'s ``perf/iteration_s``) and the evaluations of its splits under its present protocol
    (``eval.json``'s ``eval_seconds``, every method measured, asked for now or not)."""
    folders = [run] + [RunFolder(run).baseline(b, cell.train.iterations) for b in TRAINED_BASELINES]
    return sum(training(f).seconds for f in folders) + evaluation_seconds(cell, run)


def evaluation_seconds(cell: Cell, run: Path, splits: tuple[str, ...] | None = None) -> float:
    """The process-seconds of the cell's evaluations of ``splits`` (default: all its splits) under its present
    protocol."""
    chosen = cell.eval.splits if splits is None else [s for s in cell.eval.splits if s in splits]
    return sum(sum(cached(cell, run, s).get("eval_seconds", {}).values()) for s in chosen)


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))
