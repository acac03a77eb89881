"""Does an ``rl2`` run's memory help its later episodes or hurt them? Success per episode of a trial with the
memory carried across the trial's episodes (as the run trained and adapts), against the same number of episodes
each started from an empty memory (what the policy does knowing nothing of the task).

    python -m benchmarks.memory results/headline/door-rl2-seed0 --split train --tasks 40

Where the carried curve falls below the fresh one, what the memory keeps of earlier episodes makes the policy
worse; where it rises above, the memory adapts. Both act with the run's exploration noise (as support episodes do).
"""

from __future__ import annotations

import argparse

import torch

from agents.recurrent import collect_trial
from envs.vec_env import TaskVecEnv
from meta.config import family_of
from meta.rl2 import RL2
from meta.runs import load_run


def per_episode(
    run: str, split: str, tasks: int, episodes: int, worlds: int, seed: int, checkpoint: str = "latest"
) -> dict[str, dict]:
    """Success and return of episode 1 … ``episodes`` (means over ``tasks`` tasks of ``split`` drawn with ``seed``,
    ``worlds`` worlds each): ``carried`` in one trial, ``fresh`` in ``episodes`` one-episode trials reset with seeds
    ``seed``, ``seed + 1``, …, so that the first episodes of the two are the same episode. ``checkpoint``: as
    ``evaluate.py --checkpoint``."""
    for name, value in (("tasks", tasks), ("episodes", episodes), ("worlds", worlds)):
        if value < 1:
            raise ValueError(f"{name}={value!r} is not allowed: expected a positive integer")
    cfg, learner, normalizer = load_run(run, checkpoint)
    if not isinstance(learner, RL2):
        raise ValueError(f"run={run!r} trained algo={cfg.algo!r}: expected an rl2 run (only its memory carries)")
    family = family_of(cfg)
    env = TaskVecEnv(family, family.sample(seed, tasks, split), worlds, seed=seed)

    def trial(n: int, reset_seed: int) -> dict[str, torch.Tensor]:
        noise = torch.Generator().manual_seed(reset_seed)
        stats = collect_trial(env, learner.module, learner.theta, normalizer, n, noise, reset_seed).stats
        return {key: stats[f"episode_{key}"].mean(0) for key in ("success", "return")}  # [n] each

    carried = trial(episodes, seed)
    fresh = [trial(1, seed + i) for i in range(episodes)]
    return {
        "carried": {key: v.tolist() for key, v in carried.items()},
        "fresh": {key: torch.cat([f[key] for f in fresh]).tolist() for key in carried},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="an rl2 run folder")
    p.add_argument("--split", default="train", help="the split whose tasks are drawn (default train)")
    p.add_argument("--tasks", type=int, default=40, help="tasks drawn (default 40)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per trial (default 10)")
    p.add_argument("--worlds", type=int, default=4, help="worlds per task, each running its own trial (default 4)")
    p.add_argument("--seed", type=int, default=7, help="seed of the task draw, resets and action noise (default 7)")
    p.add_argument("--checkpoint", default="latest", help="latest (default), best or iter_NNNNN")
    a = p.parse_args(argv)
    try:
        curves = per_episode(a.run, a.split, a.tasks, a.episodes, a.worlds, a.seed, a.checkpoint)
    except ValueError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    print(f"per episode of a trial, {a.tasks} {a.split} tasks × {a.worlds} worlds (seed {a.seed}, {a.checkpoint})")
    print("episode                  " + " ".join(f"{i:>6d}" for i in range(1, a.episodes + 1)))
    for name, curve in curves.items():
        print(f"success, memory {name:<8} " + " ".join(f"{v:6.0%}" for v in curve["success"]))
        print(f"return,  memory {name:<8} " + " ".join(f"{v:6.0f}" for v in curve["return"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
