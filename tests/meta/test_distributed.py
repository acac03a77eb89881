"""``distributed: ray``: a meta-batch split across Ray workers takes the step one process would take, and survives
a worker that dies mid-iteration."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import train as train_cli
from meta import checkpoint
from meta.algorithms import build
from meta.config import TrainConfig
from meta.trainer import train

ray = pytest.importorskip("ray")

POINT = {"family": "point", "meta_batch": 3, "envs_per_task": 4, "iterations": 1, "checkpoint_every": 1}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def run_pair(tmp_path, **overrides) -> tuple[dict, dict, list[dict], list[dict]]:
    """The same seeded run locally and on 2 Ray workers: both final checkpoints and metrics rows."""
    out = {}
    for mode in ("none", "ray"):
        cfg = TrainConfig(**{**POINT, **overrides}, distributed=mode, workers=2, out=str(tmp_path / mode))
        run = train(cfg)
        with (run / "metrics.csv").open() as f:
            out[mode] = (checkpoint.load(run / "checkpoints" / "latest.pt"), list(csv.DictReader(f)))
    return out["none"][0], out["ray"][0], out["none"][1], out["ray"][1]


def assert_same_step(local: dict, dist: dict) -> None:
    # float32 rounding of sums taken in another order: measured ≤ 6e-7, while one Adam step moves θ by ~3e-3
    for k, v in local["learner"]["theta"].items():
        torch.testing.assert_close(dist["learner"]["theta"][k], v, rtol=1e-5, atol=1e-5)
    for k in ("mean", "var", "count"):  # shard moments merged one by one: float rounding only
        torch.testing.assert_close(dist["normalizer"][k], local["normalizer"][k], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("algo", ["maml", "reptile", "rl2", "context"])
def test_one_outer_step_on_two_ray_workers_equals_the_local_step(local_ray, tmp_path, algo):
    extra = {"trial_episodes": 2} if algo in ("rl2", "context") else {}
    local, dist, local_rows, dist_rows = run_pair(tmp_path, algo=algo, **extra)
    assert_same_step(local, dist)
    initial = build(TrainConfig(**POINT, algo=algo, **extra))[0].theta
    moved = sum((local["learner"]["theta"][k] - v.detach()).abs().max() for k, v in initial.items())
    assert moved > 1e-3  # a real step, not two copies of θ₀
    for key in ("rollout/pre_return", "rollout/post_return", "rollout/post_success"):
        assert float(dist_rows[0][key]) == pytest.approx(float(local_rows[0][key]), rel=1e-5, abs=1e-6)
    assert dist_rows[0]["perf/worker_restarts"] == "0"


def test_multitask_and_metasgd_also_match_on_two_workers(local_ray, tmp_path):
    for algo in ("multitask", "metasgd"):
        local, dist, *_ = run_pair(tmp_path / algo, algo=algo)
        assert_same_step(local, dist)
        if algo == "metasgd":
            for k, v in local["learner"]["alpha"].items():
                torch.testing.assert_close(dist["learner"]["alpha"][k], v, rtol=1e-5, atol=1e-7)


def kill_a_worker_mid_run(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker process caught inside ``MetaBatchWorker.run`` (Ray sets that process title)."""
    while not stop.is_set() and not killed:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                title = cmdline.read_bytes()
            except OSError:  # the process ended meanwhile
                continue
            if title.startswith(b"ray::MetaBatchWorker.run"):
                pid = int(cmdline.parent.name)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.005)


def test_killing_a_worker_mid_iteration_loses_no_iteration(local_ray, tmp_path, caplog):
    cfg = {**POINT, "iterations": 3, "envs_per_task": 16}
    local = train(TrainConfig(**cfg, out=str(tmp_path / "local")))
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_a_worker_mid_run, args=(killed, stop))
    killer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="meta.distributed"):
            run = train(TrainConfig(**cfg, distributed="ray", workers=2, out=str(tmp_path / "ray")))
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was caught mid-iteration"
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert sum(int(r["perf/worker_restarts"]) for r in rows) == 1
    assert any("died" in r.message for r in caplog.records)
    # The shard ran again from the same θ and seeds: the run ends where the local run ends.
    assert_same_step(
        checkpoint.load(local / "checkpoints" / "latest.pt"), checkpoint.load(run / "checkpoints" / "latest.pt")
    )


def test_distributed_ray_without_ray_installed_says_how_to_install_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    assert train_cli.main(["--distributed", "ray", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train.py: error: distributed='ray' needs Ray") and "pip install" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_more_workers_than_tasks_or_cpus_is_refused_before_any_file_is_written(local_ray, tmp_path):
    with pytest.raises(ValueError, match="workers=4 is not allowed with meta_batch=3"):
        TrainConfig(**POINT, distributed="ray", workers=4)
    cfg = TrainConfig(**POINT, distributed="ray", workers=3, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="the Ray cluster has 2 CPUs"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    assert dataclasses.replace(cfg, workers=2).workers == 2
