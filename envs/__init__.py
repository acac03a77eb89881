"""robometa task families, the single-task gymnasium env and the batched simulators.

Importing ``envs`` registers the gymnasium ids ``robometa/{Grasp,Terrain,Door,Point,Cheetah}-v0``.
"""

import ctypes.util
import os

# Offscreen rendering needs a GL backend chosen before mujoco is imported. Without a display: EGL where its
# library is installed, else OSMesa (evaluation.video.choose_gl_backend checks that one really renders, and names the
# packages to install when neither does).
if not os.environ.get("DISPLAY") and "MUJOCO_GL" not in os.environ:
    has_egl = ctypes.util.find_library("EGL") is not None
    os.environ["MUJOCO_GL"] = "egl" if has_egl or ctypes.util.find_library("OSMesa") is None else "osmesa"

from envs.family import HELD_OUT, SPLITS, Family, Param, SimState, TaskBatch
from envs.registry import FAMILIES, gym_id, make_family, parse_task_batch, register_gym_envs

register_gym_envs()

__all__ = [
    "FAMILIES",
    "HELD_OUT",
    "SPLITS",
    "Family",
    "Param",
    "SimState",
    "TaskBatch",
    "gym_id",
    "make_family",
    "parse_task_batch",
]
