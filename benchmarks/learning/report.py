"""The report of a plan's finished cells: one record per (family, algo, split, method, k) aggregated over tasks ×
seeds (:func:`make_records`), and :func:`write_report`: ``results.json`` (the records), ``results.md`` (made from
the same records: the protocol, the headline table and plots, every record, the commands) and the plots."""

from __future__ import annotations

import datetime
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.learning.cells import cores, duration, evaluated
from benchmarks.learning.plan import Cell, EvalSettings, Plan
from envs.files import atomic_path
from evaluation.baselines import TRAINED_IN
from evaluation.outputs import plot
from evaluation.protocol import METRICS, aggregate
from meta.config import TrainConfig, to_dict
from meta.runs import RunFolder, Training, training

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
SPLITS = ("test", "ood", "val")
"""The held-out splits (:data:`envs.family.HELD_OUT`) in the order the report shows them: the reported ones, then
the one for tuning."""


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
    cells' seeds."""
    out = {}
    methods = dict.fromkeys(m for _, r in evaluations for m in r["methods"])
    for method in methods:
        with_it = [(c, r["methods"][method]) for c, r in evaluations if method in r["methods"]]
        curves = [{m: np.array(r["per_task"][m][0]) for m in METRICS} for _, r in with_it]
        out[method] = (aggregate(curves), [c.seed for c, _ in with_it])
    return out


def make_records(plan: Plan, runs: Path) -> list[dict]:
    """One record per (family, algo, split, method, k) over the finished cells (see the package docstring)."""
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
    """:func:`evaluation.outputs.plot` of the headline algo and its baselines, one row per split, in one image."""
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
        f"one of its records). Machine: {platform.machine()}, {cores()} cores, torch {torch.__version__}, MuJoCo "
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
            cost = [f"{post['env_steps']:,}", duration(post["wall_clock_s"])]
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
                    duration(last["wall_clock_s"]),
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
        run = display_path(runs / f"{family}-{algo}-seedS")
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
        run, e = runs / cell.name, cell.eval
        video = RunFolder(run).evaluation("test") / "adaptation.mp4"
        lines.append(
            f"- `{family}`: `python evaluate.py {display_path(run)} --split test {_adaptation_flags(e)} "
            f"--seeds {cell.seed} --video-only` writes `{display_path(video)}`"
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


def display_path(path: Path) -> str:
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
