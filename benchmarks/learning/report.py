"""The report of a plan's finished cells: one record per (family, algo, split, method, k) aggregated over tasks ×
runs (:func:`make_records`), and :func:`write_report`: ``results.json`` (the records), ``results.md`` (made from
the same records: the protocol, the headline table and plots, the curves within a trial, the adaptation cost, every
record, the compute, the commands), the plots, and the README's headline table (:func:`readme_table`) between its
markers."""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.learning.cells import cores, evaluated, evaluation_seconds, process_seconds
from benchmarks.learning.plan import REPORTED, Cell, EvalSettings, Plan
from envs.files import atomic_path
from evaluation.baselines import TRAINED_IN
from evaluation.outputs import plot, plot_within_trial
from evaluation.protocol import METRICS, aggregate
from evaluation.statistics import stratified_bootstrap_ci
from meta.config import IN_CONTEXT, TrainConfig, to_dict
from meta.runs import RunFolder, Training, duration, training

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
    "success_mean_ci_low",
    "success_mean_ci_high",
    "return_iqm",
    "return_mean",
    "env_steps",
    "wall_clock_s",
    "seeds",
)
"""``success_ci_*`` is the IQM's interval (a bootstrap over the pooled tasks × runs), ``success_mean_ci_*`` the
mean's (:func:`evaluation.statistics.stratified_bootstrap_ci`: tasks resampled within each run); ``seeds`` are the
run seeds."""
SPLITS = ("test", "ood", "val")
"""The held-out splits (:data:`envs.family.HELD_OUT`) in the order the report shows them: the reported ones, then
the one for tuning."""
BASELINE_CHOICES = ("multitask", "sb3", "search", "scratch")
"""What a user could pick instead of a meta-learner: the headline's best baseline is the best of these (the oracle,
which sees the task, is an upper bound shown on its own)."""
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"
Z95 = 1.959964  # the standard normal's 97.5 % quantile


# ---- the records ----------------------------------------------------------------------------------------------------
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
    """Per method, :func:`evaluation.protocol.aggregate` over the tasks of every cell that evaluated it, and those
    cells' seeds. Each metric's mean interval is the stratified one (:func:`evaluation.statistics.
    stratified_bootstrap_ci`), the strata the runs: each cell's evaluation (of each of its evaluation seeds) is a run
    on tasks of its own."""
    out = {}
    methods = dict.fromkeys(m for _, r in evaluations for m in r["methods"])
    for method in methods:
        with_it = [(c, r["methods"][method]) for c, r in evaluations if method in r["methods"]]
        curves = [
            {m: np.array(r["per_task"][m][i]) for m in METRICS}
            for _, r in with_it
            for i in range(len(r["per_task"]["success"]))
        ]
        rows = aggregate(curves)
        for row in rows:
            for m in METRICS:
                low, high = stratified_bootstrap_ci([c[m][row["k"]] for c in curves], np.mean)
                row[m] = {**row[m], "mean_ci_low": low, "mean_ci_high": high}
        out[method] = (rows, [c.seed for c, _ in with_it])
    return out


def make_records(plan: Plan, runs: Path) -> list[dict]:
    """One record per (family, algo, split, method, k) over the finished cells (see the package docstring)."""
    records = []
    for (family, algo, split), evaluations in collect_results(plan, runs).items():
        for method, (rows, seeds) in summaries(evaluations).items():
            costs = np.array([_cost(runs / c.name, r, method) for c, r in evaluations if method in r["methods"]])
            train_steps, seconds, per_step = costs.mean(axis=0)  # per seed
            for row in rows:
                success = row["success"]
                records.append(
                    {
                        "family": family,
                        "algo": algo,
                        "split": split,
                        "method": method,
                        "k": row["k"],
                        "success_iqm": success["iqm"],
                        "success_ci_low": success["iqm_ci_low"],
                        "success_ci_high": success["iqm_ci_high"],
                        "success_mean": success["mean"],
                        "success_mean_ci_low": success["mean_ci_low"],
                        "success_mean_ci_high": success["mean_ci_high"],
                        "return_iqm": row["return"]["iqm"],
                        "return_mean": row["return"]["mean"],
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


def within_trial(evaluations: list[tuple[Cell, dict]]) -> dict[str, dict]:
    """Per method whose evaluations record it (methods that adapt round by round; older ``eval.json`` files lack it:
    those cells are left out), the success of each support episode in order over the cells, and its adaptation
    seconds per task.

    ``eval.json`` keeps each cell's per-episode summary (mean over its tasks, with a bootstrap interval), not the
    per-task values, so the cells are pooled from their summaries: the mean of the cells' means, each cell weighted
    equally (a family and algo share one protocol, so each has the same tasks); the interval is normal around it,
    with the standard error of a mean of independent strata, ``√Σ seᵢ² / n``, each cell's ``seᵢ`` its own 95 %
    interval's width / (2 · 1.96), clipped to [0, 1]. ``seconds`` is the mean over the cells of
    ``adaptation_seconds_per_task`` (``support``: collecting the support episodes, ``adapt``: adapting to them)."""
    out = {}
    methods = dict.fromkeys(m for _, r in evaluations for m in r["methods"])
    for method in methods:
        with_it = [(c, r["methods"][method]) for c, r in evaluations if "within_trial" in r["methods"].get(method, {})]
        if not with_it:
            continue
        rows = []
        for episode in zip(*(m["within_trial"] for _, m in with_it), strict=False):
            mean = float(np.mean([e["mean"] for e in episode]))
            se = np.sqrt(sum(((e["mean_ci_high"] - e["mean_ci_low"]) / (2 * Z95)) ** 2 for e in episode)) / len(episode)
            low, high = max(0.0, mean - Z95 * se), min(1.0, mean + Z95 * se)
            rows.append({"mean": mean, "mean_ci_low": low, "mean_ci_high": high, "n": sum(e["n"] for e in episode)})
        timed = [m["adaptation_seconds_per_task"] for _, m in with_it if "adaptation_seconds_per_task" in m]
        seconds = {k: float(np.mean([t[k] for t in timed])) for k in ("support", "adapt")} if timed else None
        out[method] = {"rows": rows, "seeds": [c.seed for c, _ in with_it], "seconds": seconds}
    return out


COMPUTE_KEYS = ("cells", "seconds", "new_cells", "new_seconds", "report_cells", "report_seconds")


def compute(plan: Plan, runs: Path) -> dict[str, dict[str, float]]:
    """Per family, the process-seconds its cells took (:func:`benchmarks.learning.cells.process_seconds`), of them
    those of its new cells (algo rl2 or context), how many cells of each there are, and the process-seconds of the
    evaluations on report draws of the cells that were there before (``report_cells``, ``report_seconds``)."""
    out: dict[str, dict[str, float]] = {}
    for cell in plan.cells:
        seconds = process_seconds(cell, runs / cell.name)
        f = out.setdefault(cell.family, dict.fromkeys(COMPUTE_KEYS, 0.0))
        f["cells"] += 1
        f["seconds"] += seconds
        if cell.algo in IN_CONTEXT:
            f["new_cells"] += 1
            f["new_seconds"] += seconds
        elif cell.report_seed is not None:
            f["report_cells"] += 1
            f["report_seconds"] += evaluation_seconds(cell, runs / cell.name, REPORTED)
    return out


# ---- the report -----------------------------------------------------------------------------------------------------
def write_report(
    plan: Plan, runs: Path, out: Path, records: list[dict], command: str, readme: Path | None = None
) -> bool:
    """``results.json`` (the records), ``results.md`` (from the same records; ``command`` made them),
    ``img/results-<family>.png`` and ``img/within-trial-<family>.png``; and the headline table between the markers
    of ``readme`` (:func:`update_readme`). Returns whether the README was rewritten."""
    (out / "img").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n")
    plots, within_plots = {}, {}
    evaluations = collect_results(plan, runs)
    curves = {key: within_trial(e) for key, e in evaluations.items()}
    by = _index(records)
    for family in plan.families:
        learner = best_learner(plan, by, family)  # None where no cell of the family is finished
        splits = [s for s in SPLITS if (family, learner, s) in evaluations]
        path = out / "img" / f"results-{family}.png"
        if splits:
            plots[family] = path
            # the learner the headline shows, and the algo whose cells measured its baselines on the same draws
            shown = dict.fromkeys((learner, baselines_of(plan, family, learner)))
            by_split = {s: {a: evaluations.get((family, a, s), []) for a in shown} for s in splits}
            _plot_family(family, by_split, path)
        else:
            path.unlink(missing_ok=True)  # a plot of cells since deleted would outlive the records it showed
        path = out / "img" / f"within-trial-{family}.png"
        if _plot_within_trial(plan, family, curves, path):
            within_plots[family] = path
        else:
            path.unlink(missing_ok=True)
    relative = {k: v.relative_to(out) for k, v in plots.items()}
    within_relative = {k: v.relative_to(out) for k, v in within_plots.items()}
    text = markdown(plan, runs, records, relative, command, curves, compute(plan, runs), within_relative)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(text)
    return readme is not None and update_readme(readme, readme_table(plan, records))


def update_readme(path: Path, table: str) -> bool:
    """Put ``table`` between the README's markers (``<!-- results:begin -->`` and ``<!-- results:end -->``, each
    once, in that order), leaving every other byte as it was; a README without them (or none) is left alone.
    Returns whether the markers were found."""
    path = Path(path)
    if not path.is_file():
        return False
    text = path.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or end < begin:
        return False
    new = text[: begin + len(README_BEGIN)] + "\n" + table + text[end:]
    if new != text:
        with atomic_path(path) as tmp:
            tmp.write_text(new)
    return True


def _plot_family(family: str, by_split: dict[str, dict[str, list[tuple[Cell, dict]]]], path: Path) -> None:
    """:func:`evaluation.outputs.plot` of every method the given cells evaluated (per split, per algo: the family's
    best learner first, then the algo whose cells measured its baselines), one row per split, in one image. A method
    measured on other runs than the best learner's, which the title names, names its seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    with tempfile.TemporaryDirectory() as tmp:
        for split, by_algo in by_split.items():
            evaluations = next(iter(by_algo.values()))  # the best learner's cells name the runs
            title = (
                f"{family}: {' and '.join(by_algo)} on {split} "
                f"({evaluations[0][0].eval.n_tasks} tasks × {_runs(evaluations, split)})"
            )
            lines = {}
            every = [c.seed for c, _ in evaluations]  # the runs the title names
            for cells in by_algo.values():
                lines |= {
                    m if seen == every else f"{m} (seed {', '.join(map(str, seen))})": rows
                    for m, (rows, seen) in summaries(cells).items()
                }
            plot(lines, title, Path(tmp) / f"{split}.png")
            panels.append(plt.imread(Path(tmp) / f"{split}.png"))
    with atomic_path(path) as tmp:
        plt.imsave(tmp, np.concatenate(panels))  # one figure size: the panels are equally wide


def _runs(evaluations: list[tuple[Cell, dict]], split: str) -> str:
    """The runs of ``evaluations`` as a title names them: their seeds, and the evaluation seeds where they differ."""
    seeds = ", ".join(str(c.seed) for c, _ in evaluations)
    drawn = ", ".join(str(c.eval_seed(split)) for c, _ in evaluations)
    return f"seeds {seeds}" if seeds == drawn else f"seeds {seeds}, eval seeds {drawn}"


def _plot_within_trial(plan: Plan, family: str, curves: dict[tuple, dict[str, dict]], path: Path) -> bool:
    """The within-trial curves on ``test`` of the family's gradient learner and its in-context learners, as far as
    their evaluations recorded them; False when none did."""
    f, groups = plan.families[family], plan.groups()
    learners = dict.fromkeys((f.gradient or f.headline, *f.in_context))
    shown = {a: curves[(family, a, "test")][a] for a in learners if a in curves.get((family, a, "test"), {})}
    if not shown:
        return False
    protocols = {a: groups[(family, a)][0].eval for a in shown}
    first = next(iter(protocols.values()))
    same = all((e.steps, e.support_episodes) == (first.steps, first.support_episodes) for e in protocols.values())
    lines = {(a if same else f"{a} (K = {_k(protocols[a])})"): c["rows"] for a, c in shown.items()}
    n_tasks = first.n_tasks
    title = f"{family} on test: success of each support episode ({n_tasks} tasks × each learner's runs)"
    with atomic_path(path) as tmp:
        plot_within_trial(lines, first.support_episodes, title, tmp)
    return True


def markdown(
    plan: Plan,
    runs: Path,
    records: list[dict],
    plots: dict[str, Path],
    command: str,
    curves: dict[tuple, dict[str, dict]] | None = None,
    spent: dict[str, dict[str, float]] | None = None,
    within_plots: dict[str, Path] | None = None,
) -> str:
    """``results.md``: how the numbers were made, the headline table and plots, the curves within a trial and the
    adaptation cost (``curves``: :func:`within_trial` per (family, algo, split)), every record, the compute
    (``spent``: :func:`compute`), and the commands."""
    import mujoco

    by = _index(records)
    lines = [
        "# Results: few-shot adaptation on held-out tasks",
        "",
        f"Generated by `{command}` on {datetime.date.today()} from `results.json` (every success and return in its "
        "tables is one of its records; the curves within a trial and the seconds are read from the runs' "
        f"`eval.json` and `metrics.csv`). Machine: {platform.machine()}, {cores()} cores, torch {torch.__version__}, "
        f"MuJoCo {mujoco.__version__}, Python {platform.python_version()}.",
        "",
        *_headline(plan, by),
        *(
            f"![{family}: return and success of its best learner and the baselines against rounds of adaptation k, "
            f"a row per split]({path.as_posix()})\n"
            for family, path in plots.items()
        ),
        "## How the numbers were made",
        "",
        "Protocol (`evaluate.py`): each cell of the plan is one meta-training run (family, algo, seed); on `n_tasks` "
        "tasks of each held-out split every method adapts for K rounds, each from fresh support episodes (a gradient "
        "learner takes an inner step per round; an in-context learner, `rl2` or `context`, folds the episodes into "
        "its memory or task posterior, forward passes only), and is measured before the first round (k = 0) and "
        "after each on fresh evaluation episodes. K and the support episodes per round are given on every row. "
        f"{_draws(plan)} Success is the fraction of evaluation episodes solved. Numbers are the mean over tasks × "
        "runs with its 95 % stratified bootstrap interval: tasks are resampled within each run, since every run is "
        "measured on a draw of tasks of its own, so the runs are the strata (`evaluation.statistics."
        "stratified_bootstrap_ci`; rliable's `StratifiedBootstrap` is not used: its strata are the columns of a "
        "[runs, tasks] score matrix, a fixed set of tasks shared by every run, which does not fit draws that differ "
        "per run, and it would add arch, pandas, scipy and seaborn). The IQM over tasks × runs (with a bootstrap "
        "interval over the pooled tasks, `success_iqm` in `results.json`) is given second: it leaves out the quarter "
        "of tasks with the lowest success and the quarter with the highest, so a kind of task that fails every time "
        "and makes up less than a quarter of the tasks does not show in it. Baselines at the same budget: `scratch` "
        "(a fresh network, the same inner loop), `multitask` (PPO on the train split for the run's env steps, then "
        "the same inner loop), `sb3` (SB3 PPO from scratch on each task with the same per-task env steps), `oracle` "
        "(`multitask` that sees the task's parameters: an upper bound, not meta-learning) and `search` (the oracle's "
        "policy told the task parameters that did best in the support episodes, one candidate per episode: strategy "
        "optimization, Yu et al. 2019; it never sees a held-out task's parameters). Env steps: the method's "
        "training plus one task's adaptation up to k; wall clock: training plus evaluating that split, per seed.",
        "",
        *_within_trial_section(plan, by, curves or {}, within_plots or {}),
        *_adaptation_cost(plan, curves or {}),
        *_full_table(plan, records, by),
        *_compute(spent),
        *_commands(plan, runs, command),
        *_videos(plan, runs),
        *(["## What mattered", "", plan.notes.read_text().strip(), ""] if plan.notes else []),
    ]
    return "\n".join(lines)


def _draws(plan: Plan) -> str:
    """The sentence saying which seeds drew the reported tasks."""
    reserved = sorted({s for c in plan.cells for s in c.eval.report_seeds})
    if not reserved:
        return (
            "The tasks and episodes of every split are drawn with the run's own seed (the plan reserves no report "
            "seeds), the evaluation seed of its tuning measurements too."
        )
    without = [f"{f} {a}" for (f, a), group in plan.groups().items() if not group[0].eval.report_seeds]
    return (
        f"test and ood numbers come from eval seeds {', '.join(map(str, reserved))}, reserved for reporting: no "
        "setting was chosen on them; tuning used val draws (the i-th run seed of a family and algo draws its "
        "`test` and `ood` tasks with the i-th report seed; `val` keeps the run's seed)"
        + (f"; the cells of {', '.join(without)} draw every split with their run seeds." if without else ".")
    )


def best_learner(plan: Plan, by: dict[tuple, dict], family: str) -> str | None:
    """The family's best learner: of its headline, gradient and in-context learners, the one with the highest mean
    success after its K rounds on ``test`` (on the first split measured, where none has a ``test`` record); ties go
    to the first named. None when none has a record."""
    candidates = plan.families[family].candidates
    for split in SPLITS:
        scored = [
            (r["success_mean"], -i, a) for i, a in enumerate(candidates) if (r := _after(plan, by, family, a, split))
        ]
        if scored:
            return max(scored)[2]
    return None


def _after(plan: Plan, by: dict[tuple, dict], family: str, algo: str, split: str, method: str = "") -> dict | None:
    """``method``'s record (default: the algo itself) in the cells of (family, algo) on ``split`` after K rounds."""
    group = plan.groups().get((family, algo))
    return by.get((family, algo, split, method or algo, group[0].eval.steps)) if group else None


def baselines_of(plan: Plan, family: str, learner: str) -> str:
    """The algo whose cells measured the baselines ``learner`` is compared with: its own where they measure any;
    else the family's first algo whose cells measure some under the same protocol on tasks drawn with every seed
    the learner's were (the in-context cells of a plan borrow the gradient learner's, measured once)."""
    groups = plan.groups()

    def draws(algo: str) -> set[tuple[str, int]]:
        return {(s, c.eval_seed(s)) for c in groups[(family, algo)] for s in c.eval.splits}

    def protocol(algo: str) -> EvalSettings:
        return dataclasses.replace(groups[(family, algo)][0].eval, baselines=(), report_seeds=())

    if groups[(family, learner)][0].eval.baselines:
        return learner
    return next(
        (
            a
            for (f, a), cells in groups.items()
            if f == family
            and cells[0].eval.baselines
            and protocol(a) == protocol(learner)
            and draws(learner) <= draws(a)
        ),
        learner,
    )


def _headline_row(plan: Plan, by: dict[tuple, dict], family: str, learner: str, split: str) -> dict | None:
    """What the headline tables show of ``learner`` on ``split``: before and after K rounds, the best baseline (of
    :data:`BASELINE_CHOICES`, by mean after K rounds, measured in the cells of :func:`baselines_of`: the same
    protocol and budget) and the oracle before adapting; None when the learner has no record after K rounds
    there."""
    e = plan.groups()[(family, learner)][0].eval
    after = by.get((family, learner, split, learner, e.steps))
    if after is None:
        return None
    donor = baselines_of(plan, family, learner)
    baselines = [
        (r["success_mean"], b, r) for b in BASELINE_CHOICES if (r := _after(plan, by, family, donor, split, b))
    ]
    best = max(baselines, key=lambda x: x[0]) if baselines else None
    return {
        "family": family,
        "split": split,
        "learner": learner,
        "K": _k(e),
        "before": by.get((family, learner, split, learner, 0)),
        "after": after,
        "baseline": (best[1], best[2]) if best else None,
        "oracle": by.get((family, donor, split, "oracle", 0)),
    }


def _headline(plan: Plan, by: dict[tuple, dict]) -> list[str]:
    columns = [
        "family",
        "split",
        "best learner",
        "K × support",
        "seeds",
        "before → after (mean [95 % CI])",
        "IQM before → after",
        "learners after K (mean)",
        "best baseline after K (mean [95 % CI])",
        "oracle (k = 0)",
        "env steps",
        "wall clock",
    ]
    lines = [
        "## Headline",
        "",
        "Per family and split, its best learner (of the headline, gradient and in-context learners the plan names, "
        "the highest mean success after its K rounds on `test`; every candidate's mean after K is listed beside it): "
        "success before adapting (k = 0) and after K rounds (K × support episodes per round), the best baseline "
        "after the same K rounds (of multitask, sb3, search and scratch, by mean) in the learner's own cells, or where "
        "those run none, in the family's cells of the same protocol and draws (an in-context learner's are its "
        "gradient learner's), and the "
        "oracle, which sees the task, before any; env steps and wall clock of the learner at k = K. The full table "
        "below says which seeds each method ran.",
        "",
        *_head(columns),
    ]
    groups = plan.groups()
    for family, f in plan.families.items():
        learner = best_learner(plan, by, family)
        if learner is None:
            continue
        group = groups[(family, learner)]
        for split in SPLITS:
            row = _headline_row(plan, by, family, learner, split)
            if row is None:
                continue
            post, pre = row["after"], row["before"]
            others = [(a, r) for a in f.candidates if (r := _after(plan, by, family, a, split))]
            shown = [
                family,
                split,
                f"{learner}{_sim(group[0].train)}",
                row["K"],
                _seeds(post["seeds"], group),
                f"{_success(pre)} → {_success(post)}",
                f"{_iqm(pre)} → {_iqm(post)}",
                ", ".join(f"{a} {r['success_mean']:.0%}" for a, r in others),
                _baseline(row["baseline"], post),
                _bound(row["oracle"], post),
                f"{post['env_steps']:,}",
                duration(post["wall_clock_s"]),
            ]
            lines.append(_row(shown))
    return [*lines, ""]


def _row(cells: list[str]) -> str:
    """One row of a markdown table."""
    return "| " + " | ".join(cells) + " |"


def _head(columns: list[str]) -> list[str]:
    """A markdown table's header row and the separator under it."""
    return [_row(columns), "|---" * len(columns) + "|"]


def _index(records: list[dict]) -> dict[tuple, dict]:
    """The records by (family, algo, split, method, k)."""
    return {(r["family"], r["algo"], r["split"], r["method"], r["k"]): r for r in records}


def record_tables(plan: Plan, records: list[dict]) -> list[str]:
    """The lines of ``results.md`` made from ``records`` alone, in their order there: the headline table and the
    table of every algorithm and baseline."""
    by = _index(records)
    return [*_headline(plan, by), *_full_table(plan, records, by)]


def readme_table(plan: Plan, records: list[dict]) -> str:
    """The README's headline table: per family, its best learner on held-out ``test`` tasks (:func:`best_learner`)
    with K, the run seeds it is measured on, success before → after K rounds (mean [95 % CI]), the best baseline
    and the oracle before adapting."""
    by = _index(records)
    groups = plan.groups()
    columns = [
        "family",
        "best learner",
        "K × support",
        "seeds",
        "before → after (mean [95 % CI])",
        "best baseline",
        "oracle (k = 0)",
    ]
    lines = _head(columns)
    for family in plan.families:
        learner = best_learner(plan, by, family)
        row = _headline_row(plan, by, family, learner, "test") if learner else None
        if row is not None:
            before_after = f"{_success(row['before'])} → {_success(row['after'])}"
            after = row["after"]
            shown = [
                family,
                learner,
                row["K"],
                _seeds(after["seeds"], groups[(family, learner)]),
                before_after,
                _baseline(row["baseline"], after),
                _bound(row["oracle"], after),
            ]
            lines.append(_row(shown))
    return "\n".join(lines) + "\n"


def _within_trial_section(
    plan: Plan, by: dict[tuple, dict], curves: dict[tuple, dict[str, dict]], plots: dict[str, Path]
) -> list[str]:
    rows = []
    groups = plan.groups()
    for (family, algo), group in groups.items():
        for split in SPLITS:
            curve = curves.get((family, algo, split), {}).get(algo)
            if curve is None:
                continue
            e, first, last = group[0].eval, curve["rows"][0], curve["rows"][-1]
            shown = [
                family,
                algo,
                split,
                _k(e),
                _seeds(curve["seeds"], group),
                _success(first),
                _success(last),
                _success(by.get((family, algo, split, algo, e.steps))),
            ]
            rows.append(_row(shown))
    if not rows:
        return [
            "## Within a trial",
            "",
            "No evaluation of this plan recorded the success of its support episodes (evaluations made before "
            "`eval.json` kept `within_trial` are left out).",
            "",
        ]
    columns = ["family", "learner", "split", "K × support", "seeds", "first support episode", "last", "after K"]
    return [
        "## Within a trial",
        "",
        "Success of the support episodes themselves, in the order a task meets them: an in-context learner may "
        "improve from one episode to the next where it runs a round's episodes one after another (`rl2`), a learner "
        "that runs them side by side (a gradient learner, `context`) only from one round to the next (each episode "
        "of a round is shown with the round's rate). "
        "Per episode, the mean over the cells' means (each cell weighted equally); `eval.json` keeps each cell's "
        "per-episode mean and interval but not its per-task values, so the 95 % interval is normal, its standard "
        "error that of a mean of independent runs, √Σ seᵢ² / n, each run's seᵢ its own bootstrap interval's width / "
        "3.92. After K: the evaluation episodes after the K-th round (the headline's numbers). The plots show each "
        "family's gradient learner and its in-context learners on `test`.",
        "",
        *_head(columns),
        *rows,
        "",
        *(f"![{family}: success of each support episode on test]({p.as_posix()})\n" for family, p in plots.items()),
    ]


def _adaptation_cost(plan: Plan, curves: dict[tuple, dict[str, dict]]) -> list[str]:
    rows = []
    for (family, algo), group in plan.groups().items():
        curve = curves.get((family, algo, "test"), {}).get(algo)
        if curve is None or curve["seconds"] is None:
            continue
        s, e = curve["seconds"], group[0].eval
        kind = "forward passes" if algo in IN_CONTEXT else "gradient steps"
        times = (s["support"], s["adapt"], s["adapt"] / e.steps)
        shown = [family, algo, kind, _k(e), *(f"{1000 * t:.1f}" for t in times)]
        rows.append(_row(shown))
    if not rows:
        return []
    columns = [
        "family",
        "learner",
        "adapts by",
        "K × support",
        "support ms/task",
        "adapt ms/task",
        "adapt ms/task/round",
    ]
    return [
        "## Adaptation cost",
        "",
        "Milliseconds per task of one `test` evaluation's K rounds, mean over the cells: collecting the support "
        "episodes (every task's worlds step together, so a task's share is the batch's time / n_tasks), and adapting "
        "to them: a gradient learner's inner steps; an in-context learner takes its support in with forward passes "
        "while it acts (`rl2`'s memory, `context`'s task posterior), inside the collection, and adapting only keeps "
        f"where each task's ended. On this machine's CPU ({cores()} cores, shared with whatever else ran).",
        "",
        *_head(columns),
        *rows,
        "",
    ]


def _full_table(plan: Plan, records: list[dict], by: dict[tuple, dict]) -> list[str]:
    max_k = max((r["k"] for r in records), default=0)
    header = ["family", "algo", "split", "method", "seeds", "K × support", *(f"k = {k}" for k in range(max_k + 1))]
    lines = [
        "## Every algorithm and baseline",
        "",
        "Success after k rounds, mean [95 % CI] (IQM); return, mean before → after K rounds; env steps and wall "
        "clock at k = K.",
        "",
        *_head([*header, "return", "env steps", "wall clock"]),
    ]
    for (family, algo), group in plan.groups().items():
        for split in SPLITS:
            methods = dict.fromkeys(
                r["method"] for r in records if (r["family"], r["algo"], r["split"]) == (family, algo, split)
            )
            for method in methods:
                rows = [by.get((family, algo, split, method, k)) for k in range(max_k + 1)]
                last = [r for r in rows if r is not None][-1]
                first = [
                    family,
                    f"{algo}{_sim(group[0].train)}",
                    split,
                    method,
                    _seeds(last["seeds"], group),
                    _k(group[0].eval),
                ]
                cost = [
                    f"{rows[0]['return_mean']:.1f} → {last['return_mean']:.1f}",
                    f"{last['env_steps']:,}",
                    duration(last["wall_clock_s"]),
                ]
                shown = [f"{_success(r)} (IQM {_iqm(r)})" if r else "—" for r in rows]
                lines.append(_row([*first, *shown, *cost]))
    if not records:
        lines.append("No cell is finished yet.")
    return [*lines, ""]


def _compute(spent: dict[str, dict[str, float]] | None) -> list[str]:
    if not spent:
        return []
    total = {k: sum(f[k] for f in spent.values()) for k in COMPUTE_KEYS}
    rows = [
        f"| {family} | {f['cells']:.0f} | {f['seconds'] / 3600:.1f} | {f['new_cells']:.0f} | "
        f"{f['new_seconds'] / 3600:.1f} | {f['report_cells']:.0f} | {f['report_seconds'] / 3600:.1f} |"
        for family, f in spent.items()
    ]
    new = (
        f"Of them, the {total['new_cells']:.0f} new cells (algo `rl2` or `context`) took "
        f"{total['new_seconds'] / 3600:.1f} process-hours"
        if total["new_cells"]
        else "The plan has no new cells (algo `rl2` or `context`)"
    )
    again = (
        f"; evaluating {total['report_cells']:.0f} cells that were there before on the report draws took "
        f"{total['report_seconds'] / 3600:.1f}."
        if total["report_cells"]
        else "."
    )
    return [
        "## Compute",
        "",
        f"The plan's {total['cells']:.0f} cells took {total['seconds'] / 3600:.1f} process-hours so far: the "
        "training of every run and of its trained baselines (`metrics.csv`, `perf/iteration_s`) and every "
        f"evaluation of its splits (`eval.json`, `eval_seconds`). {new}{again} Processes that ran at once shared "
        "the machine's cores, so each took longer than alone.",
        "",
        "| family | cells | process-hours | new cells | their process-hours | re-evaluated on report draws | "
        "their evaluations' process-hours |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


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
        run = display_path(runs / f"{family}-{algo}-seedS")
        drawn = ""
        if cell.report_seed is not None:
            pairs = ", ".join(f"{c.seed} → {c.report_seed}" for c in group)
            reported = [s for s in e.splits if s in REPORTED]
            drawn = f"; `--seeds R` on {', '.join(reported)}, with the report seed R of S: {pairs}"
        lines.append(
            f"- `{family}` `{algo}`, seeds {', '.join(str(c.seed) for c in group)}: "
            f"`python train.py {_train_flags(cell.train)} --seed S --out {run}`, then "
            f"`python evaluate.py {run} --split SPLIT --tasks {e.n_tasks} {_adaptation_flags(e)} "
            f"--eval-episodes {e.eval_episodes} --seeds S --baselines {' '.join(e.baselines)}"
            f"{_settings_flag(cell)}` "
            f"(splits: {', '.join(e.splits)}{drawn})"
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
        run, e = runs / cell.name, cell.eval
        video = RunFolder(run).evaluation("test") / "adaptation.mp4"
        lines.append(
            f"- `{family}`: `python evaluate.py {display_path(run)} --split test {_adaptation_flags(e)} "
            f"--seeds {cell.eval_seed('test')} --video-only` writes `{display_path(video)}`"
        )
    return [*lines, ""]


def _adaptation_flags(e: EvalSettings) -> str:
    """``evaluate.py`` flags of the plan's inner loop, which the evaluation and its videos share."""
    return f"--steps {e.steps} --support-episodes {e.support_episodes}"


def _settings_flag(cell: Cell) -> str:
    trained = any(b in TRAINED_IN for b in cell.eval.baselines)
    pairs = " ".join(f"{k}={v}" for k, v in cell.baseline_settings)
    return f" --baseline-settings {pairs}" if trained and pairs else ""


def _success(r: dict | None) -> str:
    """A record's mean success with its 95 % interval (or a within-trial row's: ``mean``, ``mean_ci_*``)."""
    if r is None:
        return "—"
    prefix = "success_" if "success_mean" in r else ""
    return f"{r[prefix + 'mean']:.0%} [{r[prefix + 'mean_ci_low']:.0%}, {r[prefix + 'mean_ci_high']:.0%}]"


def _iqm(r: dict | None) -> str:
    return "—" if r is None else f"{r['success_iqm']:.0%}"


def _baseline(best: tuple[str, dict] | None, learner: dict) -> str:
    """The best baseline's name and :func:`_bound`."""
    return "—" if best is None else f"{best[0]} {_bound(best[1], learner)}"


def _bound(r: dict | None, learner: dict) -> str:
    """A baseline's record beside the ``learner``'s: its mean success, with its seeds where they are fewer."""
    if r is None:
        return "—"
    return _success(r) + ("" if r["seeds"] == learner["seeds"] else f" (seed {', '.join(map(str, r['seeds']))})")


def _k(e: EvalSettings) -> str:
    """K rounds × support episodes per round."""
    return f"{e.steps} × {e.support_episodes}"


def _seeds(seeds: list[int], planned: list[Cell]) -> str:
    shown = ", ".join(map(str, seeds))
    return shown if len(seeds) == len(planned) else f"{shown} (of {len(planned)})"


def _sim(cfg: TrainConfig) -> str:
    return "" if cfg.backend == "cpu" else f" ({cfg.backend}, {cfg.device})"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (the commands are run from there)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _train_flags(cfg: TrainConfig) -> str:
    """``train.py`` flags giving ``cfg`` except its seed and out: family, algo and every option not at its algo's
    default."""
    default = to_dict(TrainConfig(algo=cfg.algo))
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
