"""The run folder: its layout, opening a new or resumed run, loading a trained one, and its refusals.

A run folder holds::

    config.yaml            the run's TrainConfig, fully resolved
    family.json            the family's identity when the run began (parameters, regions, reward, asset hashes)
    metrics.csv, tb/       one row per iteration; the same scalars as TensorBoard events
    tasks.jsonl            the task batch of every iteration
    checkpoints/           latest.pt, best.pt (by post-adaptation return), iter_NNNNN.pt every checkpoint_every
    eval/<split>/          evaluate.py's eval.json, eval.csv, adaptation.png (and adaptation.mp4) of latest.pt
    eval/<split>-<ckpt>/   the same for another checkpoint (best, iter_NNNNN)
    eval/<name>-<iters>/   a trained baseline (multitask, oracle): a run folder of its own
    MUJOCO_LOG.TXT         MuJoCo's warnings while the run trained or was evaluated (an unstable simulation), if any

Every path of that layout is written here once; so is every refusal a run folder can give (not a run, a checkpoint
of another run, trained on another version of its family, trained with another config), each one line.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agents.normalizer import ObsNormalizer
from envs.files import atomic_path
from meta import checkpoint
from meta.algorithms import build
from meta.config import TrainConfig, differences, family_of, from_dict, load_yaml, save_yaml, saved_config, to_dict
from meta.outer_loop import OuterLoop

CONFIG = "config.yaml"
FAMILY_RECORD = "family.json"
"""A run's record of the family it trains on (:meth:`envs.family.Family.identity`, as JSON): ``config.yaml`` names
the family, not what the family was when the run trained."""
METRICS = "metrics.csv"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is read or written by naming them)."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def family_record(self) -> Path:
        return self.path / FAMILY_RECORD

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def tasks(self) -> Path:
        return self.path / "tasks.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """``latest``, ``best`` or ``iter_NNNNN``."""
        return self.checkpoints / f"{which}.pt"

    def kept(self) -> list[str]:
        """The checkpoints the folder holds, by name: ``latest``, ``best``, then ``iter_NNNNN`` in order."""
        names = sorted(p.stem for p in self.checkpoints.glob("*.pt"))
        return [n for n in ("latest", "best") if n in names] + [n for n in names if n.startswith("iter_")]

    @property
    def mujoco_log(self) -> Path:
        return self.path / "MUJOCO_LOG.TXT"

    def evaluation(self, split: str, which: str = "latest") -> Path:
        """Where ``evaluate.py`` writes a split's results for checkpoint ``which``: each checkpoint its own folder, so
        that evaluating ``best`` never overwrites what ``latest`` measured."""
        return self.path / "eval" / (split if which == "latest" else f"{split}-{which}")

    def baseline(self, name: str, iterations: int) -> Path:
        """Where a trained baseline (``multitask``, ``oracle``) of this run at ``iterations`` lives."""
        return self.path / "eval" / f"{name}-{iterations}"


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.family}-{cfg.algo}-seed{cfg.seed}-{stamp}"


def run_config(run: str | Path) -> TrainConfig:
    """The config a run folder's ``config.yaml`` holds (one-line ``ValueError`` if there is no such folder or it
    has none)."""
    folder = RunFolder(Path(run))
    if not folder.path.exists():
        raise ValueError(f"{run} does not exist")
    if not folder.config.is_file():
        raise ValueError(f"{run}: not a run folder (no {CONFIG})")
    return saved_config(load_yaml(folder.config), where=str(folder.config))


def read_checkpoint(run: str | Path, which: str) -> tuple[TrainConfig, dict]:
    """A run's config and its checkpoint ``which``, checked to belong together (one-line ``ValueError`` if not).

    They may differ in ``iterations``: a run trained longer (``--resume RUN_DIR --iterations N``) keeps the
    checkpoints written before, which saved the shorter target.
    """
    cfg = run_config(run)
    state = checkpoint.load(RunFolder(Path(run)).checkpoint(which))
    saved = state.get("config")
    # Through saved_config, so that a checkpoint written before a config field existed compares with what it meant.
    if not isinstance(saved, dict) or any(
        name != "iterations" for name, *_ in differences(saved_config(saved, where=f"checkpoints/{which}.pt"), cfg)
    ):
        raise ValueError(f"{run}: checkpoints/{which}.pt belongs to another run (its config differs)")
    return cfg, state


def family_changes(run: str | Path, cfg: TrainConfig) -> list[str]:
    """The keys of the family's identity that differ from what ``run`` recorded (empty when it recorded none)."""
    path = RunFolder(Path(run)).family_record
    if not path.is_file():
        return []
    then, now = json.loads(path.read_text()), json.loads(json.dumps(family_of(cfg).identity()))
    return sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))


def check_family(run: str | Path, cfg: TrainConfig, advice: str) -> None:
    """Refuse (one-line ``ValueError`` ending in ``advice``) a run trained on another version of its family: a changed
    reward, task range or model would make its numbers those of another benchmark."""
    changed = family_changes(run, cfg)
    if changed:
        raise ValueError(
            f"{run} was trained on another version of the {cfg.family} family (its {changed[0]} differs): {advice}"
        )


def check_config(run: str | Path, wanted: TrainConfig, who: str, advice: str) -> None:
    """Refuse (one-line ``ValueError``) a run folder whose config differs from ``wanted``, which ``who`` asks for
    (``"this run needs"``, ``"the plan now says"``): the first differing field, then ``advice``."""
    diff = differences(run_config(run), wanted)
    if diff:
        field, was, now = diff[0]
        raise ValueError(f"{run} was trained with {field}={was!r}, but {who} {now!r}: {advice}")


def _resumable(run: str | Path) -> tuple[TrainConfig, dict | None]:
    """The config and latest checkpoint of a run to continue; no checkpoint (``None``) for a run stopped before its
    first iteration was complete, which then starts over. A run whose family changed since is refused."""
    cfg = run_config(run)
    state = None
    if RunFolder(Path(run)).kept() or training(run).iterations:
        cfg, state = read_checkpoint(run, "latest")
    check_family(run, cfg, "continuing would train on another family; start a new run")
    return cfg, state


def progress(run: str | Path) -> tuple[int, int]:
    """The iterations the run in ``run`` has completed (as its latest checkpoint says) and the iterations it trains
    to; one-line ``ValueError`` where :func:`open_run` would refuse to continue it."""
    cfg, state = _resumable(run)
    return (0 if state is None else state["iteration"]), cfg.iterations


def open_run(
    cfg: TrainConfig | None, resume: str | None, iterations: int | None = None
) -> tuple[TrainConfig, RunFolder, dict | None]:
    """The run's config, folder and (when resuming) its latest checkpoint; ``iterations`` trains a resumed run to
    that many iterations in all, more than it has done. Everything is checked before anything is written, so bad
    input leaves no file changed."""
    if resume is not None:
        cfg, state = _resumable(resume)
        if iterations is not None:
            done = 0 if state is None else state["iteration"]
            if iterations <= done:
                raise ValueError(
                    f"--iterations {iterations} is not allowed: {resume} has done {done} iterations; "
                    f"give more than {done} to train it longer"
                )
            cfg = dataclasses.replace(cfg, iterations=iterations)
        return cfg, RunFolder(Path(resume)), state
    run = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if run.exists() and any(run.iterdir()):
        raise ValueError(f"--out {run} already holds files: continue it with --resume {run}, or choose another --out")
    cfg = from_dict({**to_dict(cfg), "out": str(run)}, where="config")
    return cfg, RunFolder(run), None


def begin(folder: RunFolder, cfg: TrainConfig) -> None:
    """Write what a run folder holds from its start: ``config.yaml``, ``family.json``, ``checkpoints/``."""
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, folder.config)
    with atomic_path(folder.family_record) as tmp:
        tmp.write_text(json.dumps(family_of(cfg).identity(), indent=1) + "\n")


def load_run(run: str | Path, which: str = "latest") -> tuple[TrainConfig, OuterLoop, ObsNormalizer]:
    """A trained run's config, outer loop and normalizer from checkpoint ``which`` (``latest``, ``best``,
    ``iter_NNNNN``); a run trained on another version of its family (one-line ``ValueError``) is not taken for one
    of this."""
    cfg, state = read_checkpoint(run, which)
    check_family(run, cfg, "use the code it was trained with, or train it again")
    return (cfg, *build(cfg, state))


def duration(seconds: float) -> str:
    """``seconds`` as a person reads a duration: seconds up to 90, minutes up to 90, hours beyond."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Training:
    """What a run folder's ``metrics.csv`` says: iterations done, env steps and the trainer's own iteration time."""

    iterations: int = 0
    env_steps: int = 0
    seconds: float = 0.0


def training(run: str | Path) -> Training:
    """How far the run in ``run`` trained (zeros when it has not begun)."""
    path = RunFolder(Path(run)).metrics
    if not path.is_file():
        return Training()
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return Training()
    seconds = sum(float(r["perf/iteration_s"]) for r in rows)
    return Training(int(rows[-1]["iteration"]), int(float(rows[-1]["env_steps"])), seconds)


class MetricsLog:
    """What a run records per iteration, ``metrics.csv``, TensorBoard events and ``tasks.jsonl``, all cut back to the
    resumed iteration: a run stopped after writing an iteration's records but before its checkpoint redoes that
    iteration, and must not record it twice."""

    def __init__(self, folder: RunFolder, start: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # TensorBoard's import is slow; only a training needs it

        self.path, self.tasks = folder.metrics, folder.tasks
        self.rows: list[dict] = []
        if self.path.exists():
            with self.path.open() as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
        if self.tasks.exists():  # one line per iteration, in order: the first `start` are the iterations kept
            kept = self.tasks.read_text().splitlines(keepends=True)[:start]
            with atomic_path(self.tasks) as tmp:
                tmp.write_text("".join(kept))
        self.writer = SummaryWriter(str(folder.tensorboard), purge_step=start + 1)

    def add(self, row: dict, tasks: dict) -> None:
        """Record iteration ``row["iteration"]``: its metrics ``row`` and the task batch it trained on."""
        self.rows.append(row)
        for k, v in row.items():
            if "/" in k:
                self.writer.add_scalar(k, v, row["iteration"])
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:  # whole or not at all
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerows(self.rows)
        with self.tasks.open("a") as f:
            f.write(json.dumps({"iteration": row["iteration"], **tasks}) + "\n")

    def close(self) -> None:
        self.writer.close()


def save_checkpoints(folder: RunFolder, state: dict, improved: bool, every: int) -> None:
    """``latest.pt`` always, ``best.pt`` when ``improved``, ``iter_NNNNN.pt`` every ``every`` iterations."""
    iteration = state["iteration"]
    checkpoint.save(folder.checkpoint("latest"), state)
    if improved:
        checkpoint.save(folder.checkpoint("best"), state)
    if iteration % every == 0:
        checkpoint.save(folder.checkpoint(f"iter_{iteration:05d}"), state)


@contextlib.contextmanager
def mujoco_log(folder: RunFolder) -> Iterator[None]:
    """MuJoCo's warnings (an unstable simulation, a full contact buffer) go to the run folder's ``MUJOCO_LOG.TXT``
    while the block runs, then wherever they went before. MuJoCo's own default is a ``MUJOCO_LOG.TXT`` in the current
    folder, a stray file in whatever folder a command was started from (a checkout, a home folder)."""
    import mujoco  # envs chose the offscreen GL backend (MUJOCO_GL) before this first import

    before = mujoco.MjLogConfig.get()
    config = mujoco.MjLogConfig.get()
    config.logfile = str(folder.mujoco_log.absolute())
    config.set()
    try:
        yield
    finally:
        before.set()
