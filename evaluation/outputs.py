"""What an evaluation leaves behind: ``eval.json`` (every number), ``eval.csv``, the adaptation plot, and the
printed table."""

from __future__ import annotations

import csv
import json
import math
import platform
from pathlib import Path

import torch

from envs.files import atomic_path
from evaluation.protocol import METRICS, EvalConfig, config_dict
from meta.config import TrainConfig, to_dict


def header(run: Path, checkpoint: str, ec: EvalConfig, cfg: TrainConfig) -> dict:
    """What an ``eval.json`` records before its numbers: the run, the protocol, the run's config and versions."""
    import mujoco  # envs chose the offscreen GL backend (MUJOCO_GL) before this first import

    versions = {"torch": torch.__version__, "mujoco": mujoco.__version__, "python": platform.python_version()}
    return {
        "run": str(run),
        "checkpoint": checkpoint,
        "config": config_dict(ec),
        "train_config": to_dict(cfg),
        "versions": versions,
    }


def table(results: dict) -> str:
    """The printed summary: a line saying what k and the numbers are, then per method and k the success and return,
    each as the mean over tasks with its 95 % CI (the share of tasks solved, what a reader expects) and the IQM
    beside it (robust to a few outlying tasks)."""
    ec = results["config"]
    seeds = len(ec["seeds"])
    lines = [
        f"k: rounds of adaptation, each from {ec['support_episodes']} fresh support episodes per task (k = 0: before "
        f"adapting); mean over {ec['n_tasks']} tasks × {seeds} seed{'s' if seeds > 1 else ''} [95 % CI], then the IQM",
        f"{'method':10s} {'k':>2s}  {'success: mean [95% CI]':>23s} {'IQM':>6s}  "
        f"{'return: mean [95% CI]':>30s} {'IQM':>9s}",
    ]
    for name, r in results["methods"].items():
        for row in r["summary"]:
            suc, ret = row["success"], row["return"]
            lines.append(
                f"{name:10s} {row['k']:2d}  {suc['mean']:6.1%} [{suc['mean_ci_low']:6.1%}, {suc['mean_ci_high']:6.1%}]"
                f" {suc['iqm']:6.1%}  {ret['mean']:9.2f} [{ret['mean_ci_low']:8.2f}, {ret['mean_ci_high']:8.2f}]"
                f" {ret['iqm']:9.2f}"
            )
    return "\n".join(lines)


def plot(summaries: dict[str, list[dict]], title: str, path) -> None:
    """Return and success rate (the mean over tasks with 95 % bands: the share of tasks solved) against k, one line
    per method, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "return", "episode return"), (axes[1], "success", "success rate")):
        for name, rows in summaries.items():
            ks = [r["k"] for r in rows]
            mid = [r[metric]["mean"] for r in rows]
            ax.plot(ks, mid, marker="o", label=name)
            ax.fill_between(
                ks, [r[metric]["mean_ci_low"] for r in rows], [r[metric]["mean_ci_high"] for r in rows], alpha=0.2
            )
        ax.set_xlabel("rounds of adaptation k (0 = before adapting)")
        ax.set_ylabel(f"{label} (mean over tasks, 95 % CI)")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(-0.05, 1.05)
    # One legend for both panels, below them: inside a panel it covered curves once a family had seven methods.
    handles, labels = axes[0].get_legend_handles_labels()
    rows = math.ceil(len(labels) / 4)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_within_trial(methods: dict[str, list[dict]], episodes_per_round: int, title: str, path) -> None:
    """Success of every support episode in order (mean over tasks, 95 % bands), one line per method: how a learner
    adapts inside its budget, episode by episode (a gradient learner's steps come between rounds, so its line is
    flat within one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, rows in methods.items():
        x = range(1, len(rows) + 1)
        ax.plot(x, [r["mean"] for r in rows], marker=".", label=name)
        ax.fill_between(x, [r["mean_ci_low"] for r in rows], [r["mean_ci_high"] for r in rows], alpha=0.2)
    longest = max(len(rows) for rows in methods.values())
    for boundary in range(episodes_per_round, longest, episodes_per_round):
        ax.axvline(boundary + 0.5, color="grey", linestyle=":", linewidth=1)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # episodes are counted, not measured
    ax.set_xlabel(f"support episode ({episodes_per_round} per round; dotted: rounds)")
    ax.set_ylabel("success (mean over tasks, 95 % CI)")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: dict, out: Path, title: str) -> None:
    """``eval.json`` (every number), ``eval.csv`` (one row per method, k and metric), ``adaptation.png`` and, where
    methods record one, ``within_trial.png`` in ``out``; each written whole or not at all
    (:func:`envs.files.atomic_path`)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"method": name, "k": row["k"], "metric": m, **row[m]}
        for name, r in results["methods"].items()
        for row in r["summary"]
        for m in METRICS
    ]
    writes = {
        "eval.json": lambda p: p.write_text(json.dumps(results, indent=1) + "\n"),
        "eval.csv": lambda p: _write_csv(p, rows),
        "adaptation.png": lambda p: plot({k: v["summary"] for k, v in results["methods"].items()}, title, p),
    }
    within = {k: v["within_trial"] for k, v in results["methods"].items() if v.get("within_trial")}
    if within:
        episodes = results["config"]["support_episodes"]
        writes["within_trial.png"] = lambda p: plot_within_trial(within, episodes, title, p)
    for name, write in writes.items():
        with atomic_path(out / name) as tmp:
            write(tmp)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
