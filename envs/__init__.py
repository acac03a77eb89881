"""robometa task families, the single-task gymnasium env and (later) batched simulators.

Importing ``envs`` registers the gymnasium ids ``robometa/{Grasp,Terrain,Door,Point,Cheetah}-v0``.
"""

import os

# Offscreen rendering needs a GL backend chosen before mujoco is imported; without a display, EGL.
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

from envs.family import SPLITS, Family, Param, SimState, TaskBatch
from envs.registry import FAMILIES, gym_id, make_family, register_gym_envs

register_gym_envs()

__all__ = ["FAMILIES", "SPLITS", "Family", "Param", "SimState", "TaskBatch", "gym_id", "make_family"]
