"""Meta-training across processes and machines on Ray (``distributed: ray``).

Each meta-batch's tasks are split into contiguous shards, one per Ray actor. An actor is a
:class:`meta.worker.MetaBatchWorker` with its own batched simulator (CPU threads, or its own GPU with
``device: cuda``): it rolls out and adapts its tasks from the θ it is sent and returns their contribution to the
outer step. The learner (the ``train.py`` process) adds the contributions up, takes the outer step and sends the
new θ with the next meta-batch. Reset and action noise are drawn as the whole batch would draw them
(:mod:`envs.noise`), so a distributed step equals the step of one process holding the batch, up to float
rounding.

A worker's result depends only on what it is sent, so a worker that dies is restarted by Ray and its shard sent
again: the iteration completes with the same numbers, and the event is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from envs.family import TaskBatch
from meta.config import TrainConfig
from meta.worker import MetaBatchWorker, ShardResult

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""Times one shard is sent in one iteration before the run stops (a worker that keeps dying is a bug, not bad
luck)."""
RESTART_TIMEOUT_S = 120
"""How long a restarting worker may take to come back (it imports torch and MuJoCo and builds its simulator)."""


class RayWorkers:
    """``cfg.workers`` Ray actors running the shards of every meta-batch.

    Connects to the cluster at ``cfg.ray_address``, or starts Ray on this machine (and stops it in :meth:`close`).
    """

    def __init__(self, cfg: TrainConfig) -> None:
        try:
            import ray
        except ImportError:  # checked here, not in the config: evaluating a distributed run needs no Ray
            raise ValueError(
                "distributed='ray' needs Ray, which is not installed: pip install -e '.[distributed]' "
                "(or pip install ray)"
            ) from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            try:
                ray.init(address=cfg.ray_address, include_dashboard=False, logging_level=logging.WARNING)
            except ConnectionError as e:
                raise ValueError(
                    f"ray_address={cfg.ray_address!r}: {e}. A cluster started with `ray start` wants its token: "
                    "run on its head with --ray-address auto, or set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"
                ) from None
        cpus = ray.cluster_resources().get("CPU", 0)
        if cfg.workers * cfg.worker_cpus > cpus:
            self.close()
            raise ValueError(
                f"workers={cfg.workers} × worker_cpus={cfg.worker_cpus} is not allowed: the Ray cluster has "
                f"{cpus:g} CPUs"
            )
        actor = ray.remote(MetaBatchWorker).options(
            num_cpus=cfg.worker_cpus,
            num_gpus=1 if cfg.device == "cuda" else 0,
            max_restarts=-1,  # Ray brings a dead worker back; run() bounds how often per iteration
        )
        self.actors = [actor.remote(cfg, nthread=cfg.worker_cpus) for _ in range(cfg.workers)]
        self.restarts = 0
        """Shards sent again because their worker died, over the whole run."""

    def run(self, state: dict, tasks: TaskBatch, seeds: tuple) -> list[ShardResult]:
        """Every shard's result, in task order; a shard whose worker dies is sent again."""
        ray = self._ray
        n = len(tasks)
        bounds = np.array_split(np.arange(n), len(self.actors))
        state = ray.put(state)  # one copy in the object store, read by every worker

        def send(i: int):
            ids = bounds[i]
            shard = dataclasses.replace(tasks, tasks=tasks.tasks[ids[0] : ids[-1] + 1])
            return self.actors[i].run.remote(state, shard, (int(ids[0]), n), seeds)

        pending = {send(i): i for i in range(len(self.actors))}
        attempts = [1] * len(self.actors)
        results: list[ShardResult | None] = [None] * len(self.actors)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                if attempts[i] == MAX_ATTEMPTS:
                    raise RuntimeError(f"Ray worker {i} died {MAX_ATTEMPTS} times in one iteration: {e}") from e
                log.warning("Ray worker %d died (%s); Ray restarts it and its %d tasks run again", i, e, len(bounds[i]))
                self._wait_until_back(i)
                attempts[i] += 1
                self.restarts += 1
                pending[send(i)] = i
        return results

    def _wait_until_back(self, i: int) -> None:
        """Block until Ray has restarted worker ``i`` (a call sent while it restarts would fail again)."""
        ray, deadline = self._ray, time.monotonic() + RESTART_TIMEOUT_S
        while True:
            try:
                ray.get(self.actors[i].__ray_ready__.remote())
                return
            except ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray worker {i} did not come back within {RESTART_TIMEOUT_S} s") from None
                time.sleep(0.2)

    def close(self) -> None:
        """Stop the workers (and Ray, if this process started it)."""
        for a in getattr(self, "actors", []):
            self._ray.kill(a, no_restart=True)
        if self._started:
            self._ray.shutdown()
