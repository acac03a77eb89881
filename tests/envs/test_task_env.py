"""``TaskEnv`` specifics beyond the per-family contract."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton (CUDA builds of torch carry it)")
def test_rendering_then_building_an_optimizer_does_not_crash():
    # Mesa's llvmpipe and triton each carry LLVM; triton loaded after Mesa used to segfault the process.
    code = (
        "import envs, torch\n"
        "from envs.task_env import TaskEnv\n"
        "env = TaskEnv('point', seed=0, render_mode='rgb_array'); env.reset(seed=0); env.render()\n"
        "torch.optim.Adam(torch.nn.Linear(2, 2).parameters())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
