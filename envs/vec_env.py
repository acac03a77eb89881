"""``TaskVecEnv``: every task of a meta-batch, ``envs_per_task`` copies each, stepping in one batched simulator.

Tensors are shaped ``[n_tasks, envs_per_task, ...]`` (``B = n_tasks × envs_per_task`` worlds, task-major). The
family's own hooks compute observation, reward and success on the whole batch at once: the same functions
``TaskEnv`` calls with one world.

Auto-reset is same-step (as in SB3 and Brax): when a world's episode ends, :meth:`TaskVecEnv.step` returns the
first observation of its next episode and puts the last observation of the finished one in
``info["final_obs"]``, for bootstrapping truncated episodes.

An env may hold a shard of a larger meta-batch (:meth:`TaskVecEnv.set_tasks` ``shard``): its reset noise is then
what those worlds would draw in the whole batch (:mod:`envs.noise`), so shards reproduce the whole.
"""

from __future__ import annotations

from typing import Any

import torch

from envs.family import Family, TaskBatch
from envs.noise import WorldRandom
from envs.registry import make_family
from envs.sim import SimSettings, make_sim


class TaskVecEnv:
    """A batch of tasks as one vector env.

    :param family: family name or instance.
    :param tasks: the tasks (one family, any split).
    :param envs_per_task: parallel copies of each task.
    :param sim: engine, device and threads of the batched simulator (default: MuJoCo's CPU batch on every
        available core; ``SimSettings("warp", "cuda")`` for a GPU).
    :param seed: seed of the reset noise.
    """

    def __init__(
        self,
        family: str | Family,
        tasks: TaskBatch,
        envs_per_task: int,
        sim: SimSettings = SimSettings(),  # noqa: B008 (a frozen dataclass: one shared default is safe)
        seed: int = 0,
    ) -> None:
        self.family = make_family(family) if isinstance(family, str) else family
        self.sim = make_sim(self.family, sim)
        self.device = self.sim.device
        self.obs_dim, self.action_dim = self.family.obs_dim, self.family.action_dim
        self._seed = seed
        self.set_tasks(tasks, envs_per_task)

    def set_tasks(
        self, tasks: TaskBatch, envs_per_task: int | None = None, shard: tuple[int, int] | None = None
    ) -> None:
        """Switch to another task batch (e.g. the next meta-batch). Call :meth:`reset` afterwards.

        :param shard: ``(first, total)``: ``tasks`` are tasks ``first … first + len(tasks) - 1`` of a meta-batch of
            ``total`` tasks split across processes. Default: ``tasks`` is the whole batch.
        """
        first, total = (0, len(tasks)) if shard is None else shard
        if not 0 <= first <= total - len(tasks):
            raise ValueError(f"shard={shard!r} is not allowed: {len(tasks)} tasks must fit in a batch of {total}")
        self.sim.set_tasks(tasks, self.envs_per_task if envs_per_task is None else envs_per_task)
        self.tasks, self.n_tasks, self.envs_per_task = tasks, self.sim.n_tasks, self.sim.envs_per_task
        self.first_task, self.total_tasks = first, total
        self.num_envs = self.n_tasks * self.envs_per_task
        b, dev = self.num_envs, self.device
        self._task_of_world = torch.arange(b, device=dev) // self.envs_per_task
        self._t = torch.zeros(b, dtype=torch.long, device=dev)
        self._return = torch.zeros(b, dtype=torch.float64, device=dev)
        self._solved = torch.zeros(b, dtype=torch.bool, device=dev)
        self._stats = {k: torch.zeros(self.n_tasks, dtype=torch.float64, device=dev) for k in _STAT_KEYS}

    def _shape(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.n_tasks, self.envs_per_task, *x.shape[1:])

    def _observe(self) -> torch.Tensor:
        return self.family.policy_observation(self.sim.state, self.sim.task).to(torch.float32)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every world; returns observations ``[n_tasks, envs_per_task, obs_dim]`` (float32).

        The reset noise of a world (now and at every automatic reset until the next call) depends only on
        ``seed``, the step and the world's index in the whole meta-batch."""
        self._episode_seed = self._seed if seed is None else seed
        self._steps = 0
        self._reset_worlds(torch.arange(self.num_envs, device=self.device))
        self._t.zero_()
        self._return.zero_()
        self._solved.zero_()
        return self._shape(self._observe())

    def step(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance every world by one control step.

        :param action: ``[n_tasks, envs_per_task, action_dim]`` in ``[-1, 1]``.
        :return: ``obs [n, E, obs_dim]`` (float32; a new episode's first observation where one ended), ``reward
            [n, E]`` (float32), ``terminated [n, E]``, ``truncated [n, E]``, and ``info`` with ``success [n, E]``
            (this step), ``is_success [n, E]`` (any step of the episode so far, before a reset), ``unstable [n, E]``
            (the world diverged: it gets reward 0, a zero observation and a reset), ``final_obs [n, E, obs_dim]``
            and the named reward terms under ``reward/<name>``.
        """
        expected = (self.n_tasks, self.envs_per_task, self.action_dim)
        if tuple(action.shape) != expected:
            raise ValueError(f"action has shape {tuple(action.shape)}: expected {expected}")
        f, sim = self.family, self.sim
        a = action.reshape(self.num_envs, self.action_dim).to(self.device, sim.dtype)
        sim.step(f.control(a, sim.state, sim.task))
        self._t += 1
        self._steps += 1
        unstable = sim.unstable()
        terms = f.reward_terms(sim.state, a, sim.task)
        reward = torch.where(unstable, 0.0, torch.stack(list(terms.values())).sum(0))
        success = f.success(sim.state, sim.task) & ~unstable
        terminated = f.failed(sim.state, sim.task) | unstable
        truncated = (self._t >= f.episode_length) & ~terminated
        obs = torch.where(unstable[:, None], 0.0, self._observe())
        self._solved |= success
        self._return += reward
        info = {
            "success": self._shape(success),
            "is_success": self._shape(self._solved.clone()),
            "unstable": self._shape(unstable),
            "final_obs": self._shape(obs),
            **{f"reward/{k}": self._shape(torch.where(unstable, 0.0, v).float()) for k, v in terms.items()},
        }
        done = terminated | truncated
        if done.any():
            obs = self._end_episodes(done, unstable, obs)
        return self._shape(obs), self._shape(reward.float()), self._shape(terminated), self._shape(truncated), info

    def _end_episodes(self, done: torch.Tensor, unstable: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Record the finished episodes in the per-task statistics, reset those worlds, and return ``obs`` with
        their first observations."""
        task, d = self._task_of_world, done.to(torch.float64)
        for key, value in (
            ("episodes", d),
            ("return", self._return * d),
            ("length", self._t * d),
            ("success", self._solved * d),
            ("unstable", unstable.to(torch.float64)),
        ):
            self._stats[key].index_add_(0, task, value.to(torch.float64))
        ids = done.nonzero().squeeze(1)
        self._reset_worlds(ids)
        self._t[ids] = 0
        self._return[ids] = 0.0
        self._solved[ids] = False
        obs = obs.clone()
        obs[ids] = self._observe()[ids]
        return obs

    def _reset_worlds(self, ids: torch.Tensor) -> None:
        e = self.envs_per_task
        worlds = ids.cpu().numpy() + self.first_task * e
        self.sim.reset(ids, WorldRandom(self._episode_seed, self._steps, worlds, self.total_tasks * e))

    def episode_stats(self, clear: bool = True) -> dict[str, torch.Tensor]:
        """Per-task statistics of the episodes finished since the last clear, each ``[n_tasks]``: ``episodes``,
        ``return`` and ``length`` (means), ``success`` (rate), ``unstable`` (worlds reset after diverging)."""
        s = self._stats
        n = s["episodes"].clamp(min=1)
        out = {
            "episodes": s["episodes"].clone(),
            "return": s["return"] / n,
            "length": s["length"] / n,
            "success": s["success"] / n,
            "unstable": s["unstable"].clone(),
        }
        if clear:
            for v in s.values():
                v.zero_()
        return out


_STAT_KEYS = ("episodes", "return", "length", "success", "unstable")


def scripted_success_rate(family: Family, batch: TaskBatch, seed: int = 0) -> float:
    """Fraction of ``batch``'s tasks the family's scripted controller solves in one episode (``is_success`` when
    the episode ends), every task at once in one ``TaskVecEnv`` reset with ``seed``."""
    env = TaskVecEnv(family, batch, 1, seed=seed)
    env.reset()
    n = len(batch)
    ended = torch.zeros(n, dtype=torch.bool)
    solved = torch.zeros(n, dtype=torch.bool)
    while not ended.all():
        action = family.scripted_action(env.sim.state, env.sim.task).reshape(n, 1, -1)
        _, _, terminated, truncated, info = env.step(action)
        now = (terminated | truncated).reshape(n) & ~ended  # only each task's first episode counts
        solved |= now & info["is_success"].reshape(n)
        ended |= now
    return solved.double().mean().item()
