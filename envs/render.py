"""Pictures of tasks: a grid of rendered tasks with their parameters as captions."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from envs.family import Family, Task, TaskBatch
from envs.files import atomic_path
from envs.task_env import TaskEnv


def caption(task: Task, width: int = 44) -> str:
    """``name=value`` pairs wrapped at ``width`` characters."""
    parts = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in task.items()]
    lines, line = [], ""
    for p in parts:
        if line and len(line) + len(p) > width:
            lines.append(line)
            line = ""
        line = f"{line}  {p}" if line else p
    return "\n".join([*lines, line])


def render_grid(family: Family, batch: TaskBatch, out: Path, steps: int = 0, seed: int = 0) -> None:
    """Render each task of ``batch`` after reset and ``steps`` control steps (the scripted controller where the
    family has one, else zero action) into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out} is not allowed: expected a .png file")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {out} is not allowed: folder {out.parent} does not exist or is not writable")
    n = len(batch)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, task) in enumerate(zip(axes.flat, batch.tasks, strict=False)):
        env = TaskEnv(family, task, render_mode="rgb_array", width=320, height=240)
        env.reset(seed=seed + i)
        for _ in range(steps):
            scripted = family.scripted_success is not None
            env.step(env.scripted_action() if scripted else np.zeros(family.action_dim, np.float32))
        ax.imshow(env.render())
        env.close()
        ax.set_title(caption(task), fontsize=6.5)
    fig.suptitle(f"{family.name} — {batch.split} split" + (f", seed {batch.seed}" if batch.seed is not None else ""))
    fig.tight_layout()
    with atomic_path(out) as tmp:  # a failed render never leaves a half-written picture
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
