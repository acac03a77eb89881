"""Rollout throughput against the ceiling and the peers, in one run; writes ``docs/performance.md`` and
``docs/performance.json``.

Per family and number of worlds ``B`` (each task of a meta-batch × envs per task):
- ``mj_step``: one world stepped by a plain ``mujoco.mj_step`` loop (the per-core ceiling);
- ``batch physics``: ``mujoco.batch.Batch`` stepping the same per-task models, nothing else (MuJoCo's ceiling);
- ``TaskVecEnv + policy``: robometa's vector env with a 2×256 MLP policy acting every step;
- ``SyncVectorEnv + policy``: gymnasium's vector env over ``TaskEnv`` with the same policy;
- ``SB3 PPO``: stable-baselines3 PPO training on ``TaskEnv`` (8 envs), env steps/s including its updates.

    python -m benchmarks.throughput            # B in 16, 64, 256, 1024 (a few minutes)
    python -m benchmarks.throughput --quick    # B in 64, 256, shorter timings (about a minute)

Threads are set deliberately: MuJoCo's pool uses every available core, torch one thread
(:func:`envs.sim.share_cores_with_physics`: on 2 cores a second torch thread spin-waits against the simulator;
measured on 2 cores, HalfCheetah B=256: 18k env steps/s with 2 torch threads, 26k with 1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import torch
from mujoco import batch
from tqdm import tqdm

from envs.family import Family
from envs.registry import FAMILIES, make_family
from envs.sim import BACKENDS, DEVICES, SimSettings, make_sim, share_cores_with_physics
from envs.sim.cpu import available_cores
from envs.task_env import TaskEnv
from envs.vec_env import TaskVecEnv

DOCS = Path(__file__).resolve().parents[1] / "docs"
N_TASKS = 16  # a meta-batch; B = N_TASKS × envs per task (B = 16 is one env per task)


def rate(step: Callable[[], int], seconds: float, warmup: int = 3) -> float:
    """Items per second of ``step`` (which returns how many items one call did), timed for about ``seconds``."""
    for _ in range(warmup):
        step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done == 0:
        done += step()
    return done / elapsed


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def policy(f: Family) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(f.obs_dim, 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, f.action_dim),
        torch.nn.Tanh(),
    )


def mj_step_ceiling(f: Family, seconds: float) -> float:
    """Physics steps/s of one world, plain ``mj_step``, random controls."""
    m = f.model(f.sample(0, 1).tasks[0])
    d = mujoco.MjData(m)
    lo, hi = m.actuator_ctrlrange.T
    rng = np.random.default_rng(0)

    def step() -> int:
        d.ctrl[:] = rng.uniform(lo, hi)
        mujoco.mj_step(m, d, nstep=f.frame_skip)
        if not np.isfinite(d.qvel).all() or d.time > 20:
            mujoco.mj_resetData(m, d)
        return f.frame_skip

    return rate(step, seconds)


def batch_physics(f: Family, tasks, e: int, seconds: float) -> float:
    """Env steps/s of MuJoCo's batch alone on the same per-task models (fixed random controls)."""
    n = len(tasks) * e
    b = batch.Batch(f.model0, nsim=n, nthread=available_cores())
    models = [f.model(t) for t in tasks.tasks]
    b.set_models([models[w // e] for w in range(n)])
    b.reset()
    lo, hi = f.model0.actuator_ctrlrange.T
    b.bind("ctrl")[:] = np.random.default_rng(0).uniform(lo, hi, (n, f.model0.nu)) * 0.3

    def step() -> int:
        b.step(nstep=f.frame_skip, stage=mujoco.mjtStage.mjSTAGE_VEL)
        return n

    return rate(step, seconds)


def memory_per_world(name: str, sizes: tuple[int, ...]) -> dict[int, float]:
    """Resident memory each ``TaskVecEnv`` adds per world, for each B, measured in a fresh process that keeps
    every env alive (so freed memory is not reused and counted as free)."""
    code = (
        "import gc, json, sys, envs\n"
        "from benchmarks.throughput import N_TASKS, rss_bytes\n"
        "from envs.vec_env import TaskVecEnv\n"
        "f = envs.make_family(sys.argv[1]); tasks = f.sample(0, N_TASKS, 'train'); keep, out = [], {}\n"
        "TaskVecEnv(f, tasks, 1).reset()  # import and first-use costs are not per world\n"
        "for b in map(int, sys.argv[2:]):\n"
        "    gc.collect(); before = rss_bytes(); env = TaskVecEnv(f, tasks, b // N_TASKS); env.reset()\n"
        "    keep.append(env); out[b] = (rss_bytes() - before) / b\n"
        "print(json.dumps(out))\n"
    )
    cmd = [sys.executable, "-c", code, name, *map(str, sizes)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return {int(k): v for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def vec_env_with_policy(f: Family, tasks, e: int, seconds: float, sim: SimSettings) -> float:
    """Env steps/s of ``TaskVecEnv`` with the policy in the loop."""
    env = TaskVecEnv(f, tasks, e, sim)
    obs = env.reset()
    pi = policy(f).to(env.device)
    state = {"obs": obs}

    def step() -> int:
        with torch.inference_mode():
            state["obs"] = env.step(pi(state["obs"]))[0]
        return env.num_envs

    return rate(step, seconds)


def sync_vector_env_with_policy(f: Family, tasks, e: int, seconds: float) -> float:
    """Env steps/s of gymnasium's ``SyncVectorEnv`` over ``TaskEnv`` (same tasks, same policy)."""
    fns = [lambda t=t: TaskEnv(f, t) for t in tasks.tasks for _ in range(e)]
    env = gym.vector.SyncVectorEnv(fns)
    obs, _ = env.reset(seed=0)
    pi = policy(f)
    state = {"obs": obs}

    def step() -> int:
        with torch.inference_mode():
            action = pi(torch.as_tensor(state["obs"])).numpy()
        state["obs"] = env.step(action)[0]
        return env.num_envs

    out = rate(step, seconds, warmup=1)
    env.close()
    return out


def sb3_ppo(f: Family, steps: int) -> float:
    """Env steps/s of SB3 PPO (MlpPolicy defaults, 8 envs) training on one task, updates included."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger

    task = f.sample(0, 1).tasks[0]
    venv = make_vec_env(lambda: TaskEnv(f, task), n_envs=8, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=max(steps // 16, 64), batch_size=64, seed=0, device="cpu")
    model.set_logger(Logger(folder=None, output_formats=[]))  # no SB3-<time> folder in the temporary directory
    start = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="B in 64, 256 and shorter timings (about a minute)")
    p.add_argument("--families", nargs="*", choices=list(FAMILIES), default=list(FAMILIES))
    p.add_argument("--out", type=Path, default=DOCS, help="folder for performance.md and performance.json")
    p.add_argument("--backend", choices=BACKENDS, default="cpu", help="engine under TaskVecEnv")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where TaskVecEnv's worlds and policy run")
    args = p.parse_args()
    try:  # refuse a bad backend/device pair, or a missing engine or GPU, before minutes of other timings
        sim = SimSettings(args.backend, args.device)
        make_sim(make_family(args.families[0]), sim)
    except ValueError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    share_cores_with_physics()
    sizes = (64, 256) if args.quick else (16, 64, 256, 1024)
    seconds = 0.4 if args.quick else 1.5
    ppo_steps = 2048 if args.quick else 8192
    rows, ceilings, ppo, memory = [], {}, {}, {}
    work = [(name, b) for name in args.families for b in sizes]
    bar = tqdm(work, desc="throughput", unit="cell")
    for name, b in bar:
        f = make_family(name)
        tasks = f.sample(0, N_TASKS, "train")
        e = b // N_TASKS
        if name not in ceilings:
            bar.set_postfix_str(f"{name}: mj_step, SB3 PPO")
            ceilings[name] = mj_step_ceiling(f, seconds)
            ppo[name] = sb3_ppo(f, ppo_steps)
            memory[name] = memory_per_world(name, sizes)
        bar.set_postfix_str(f"{name} B={b}")
        physics = batch_physics(f, tasks, e, seconds)
        vec, mem = vec_env_with_policy(f, tasks, e, seconds, sim), memory[name][b]
        sync = sync_vector_env_with_policy(f, tasks, e, seconds if b <= 256 else seconds * 2)
        rows.append(
            {
                "family": name,
                "B": b,
                "frame_skip": f.frame_skip,
                "mj_step_physics_steps_per_s": ceilings[name],
                "mj_step_env_steps_per_s": ceilings[name] / f.frame_skip,
                "batch_physics_env_steps_per_s": physics,
                "vec_env_policy_env_steps_per_s": vec,
                "sync_vector_env_policy_env_steps_per_s": sync,
                "sb3_ppo_env_steps_per_s": ppo[name],
                "vec_env_over_batch_physics": vec / physics,
                "vec_env_over_sync_vector_env": vec / sync,
                "vec_env_bytes_per_world": mem,
            }
        )
        bar.write(
            f"{name:8s} B={b:5d}  physics {physics:>9,.0f}  TaskVecEnv {vec:>9,.0f} ({vec / physics:4.0%})  "
            f"SyncVectorEnv {sync:>7,.0f} (×{vec / sync:.1f})  {mem / 1024:6.0f} KiB/world"
        )
    write(args.out, rows, args.quick, args.backend, args.device)


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {available_cores()} cores available"


def write(out: Path, rows: list[dict], quick: bool, backend: str, device: str) -> None:
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "quick": quick,
        "backend": backend,
        "device": device,
        "versions": {
            "mujoco": mujoco.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
            "python": platform.python_version(),
        },
        "threads": {"mujoco_batch": available_cores(), "torch": torch.get_num_threads()},
        "n_tasks": N_TASKS,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "performance.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Rollout throughput",
        "",
        f"Measured by `python -m benchmarks.throughput{' --quick' if quick else ''}` on {meta['date']} "
        f"(TaskVecEnv on backend `{backend}`, device `{device}`): "
        f"{meta['machine']}; MuJoCo {mujoco.__version__}, torch {torch.__version__} (1 thread), MuJoCo's batch on "
        f"{available_cores()} threads. These machines are shared: absolute numbers vary by ±30 % between runs; "
        "ratios from one run are what to compare. All rates are env (control) steps per second unless marked; "
        f"an env step is `frame_skip` physics steps. B = {N_TASKS} tasks × B/{N_TASKS} envs per task.",
        "",
        "| family | B | `mj_step`, 1 world, 1 core | batch physics only | TaskVecEnv + policy "
        "| of physics | SyncVectorEnv + policy | TaskVecEnv ÷ Sync | SB3 PPO training | memory/world |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['B']} | {r['mj_step_env_steps_per_s']:,.0f} "
            f"| {r['batch_physics_env_steps_per_s']:,.0f} | {r['vec_env_policy_env_steps_per_s']:,.0f} "
            f"| {r['vec_env_over_batch_physics']:.0%} | {r['sync_vector_env_policy_env_steps_per_s']:,.0f} "
            f"| ×{r['vec_env_over_sync_vector_env']:.1f} | {r['sb3_ppo_env_steps_per_s']:,.0f} "
            f"| {r['vec_env_bytes_per_world'] / 1024:,.0f} KiB |"
        )
    lines += ["", *summary(rows)]
    (out / "performance.md").write_text("\n".join(lines) + "\n")


def summary(rows: list[dict]) -> list[str]:
    """The targets, checked against this run's rows, and what limits the misses."""
    big = [r for r in rows if r["B"] >= 64]

    def misses(key: str, bound: float, fmt: str) -> str:
        bad = [f"{r['family']} B={r['B']} ({fmt.format(r[key])})" for r in big if r[key] < bound]
        return f"met in {len(big) - len(bad)} of {len(big)} cells" + (f"; missed: {', '.join(bad)}" if bad else "")

    return [
        "## Targets (B ≥ 64)",
        "",
        f"- TaskVecEnv with policy ≥ 80 % of batch physics: {misses('vec_env_over_batch_physics', 0.8, '{:.0%}')}.",
        f"- TaskVecEnv ≥ 5× SyncVectorEnv: {misses('vec_env_over_sync_vector_env', 5.0, '×{:.1f}')}.",
        "",
        "What limits the misses: per control step TaskVecEnv adds a fixed cost, the 2×256 policy (~0.15 ms for 64 "
        "observations on one thread) and ~60 small torch ops of the family's hooks (~0.3 ms), on top of the "
        "physics. Where physics is cheap (`point`: ~4 µs per world per step; `cheetah`) that fixed cost is a large "
        "share until B is large; for the robot families physics dominates. Against SyncVectorEnv the gain is "
        "bounded by physics too: `terrain`'s contact-rich steps cost the same in either, and a batch on 2 cores "
        "can at most use both. Memory per world is resident memory added per env (fresh process, every size kept "
        "alive); it does not grow with B.",
    ]


if __name__ == "__main__":
    main()
