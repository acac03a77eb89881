"""Family names → family instances, task batches read back from JSON, and the gymnasium ids
``robometa/<Name>-v0``."""

from __future__ import annotations

import importlib
import json
from functools import cache

from envs.family import SPLITS, Family, TaskBatch

# name → "module:Class"; imported on first use so one family's import cost is not every user's.
FAMILIES: dict[str, str] = {
    "grasp": "envs.families.grasp:Grasp",
    "terrain": "envs.families.terrain:Terrain",
    "door": "envs.families.door:Door",
    "point": "envs.families.point:Point",
    "cheetah": "envs.families.cheetah:Cheetah",
}


def gym_id(name: str) -> str:
    return f"robometa/{name.capitalize()}-v0"


@cache
def make_family(name: str) -> Family:
    """The family called ``name`` (raises ``ValueError`` listing the known ones)."""
    if name not in FAMILIES:
        raise ValueError(f"family={name!r} is not known: expected one of {', '.join(FAMILIES)}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def parse_task_batch(text: str) -> TaskBatch:
    """Parse and validate a batch written by :meth:`TaskBatch.to_json` (raises ``ValueError`` naming the field).

    Here, not in :mod:`envs.family`: validating the tasks needs their family, and this module is what finds a
    family by its name."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"task batch is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("tasks"), list):
        raise ValueError("task batch must be a JSON object with 'family', 'split' and a list 'tasks'")
    if not obj["tasks"]:
        raise ValueError("task batch tasks=[] is not allowed: expected at least one task")
    name = obj.get("family")
    if not isinstance(name, str):  # make_family caches by name, and a list or an object cannot be a cache key
        raise ValueError(f"task batch family={name!r} is not known: expected one of {', '.join(FAMILIES)}")
    family = make_family(name)
    split = obj.get("split")
    if split not in SPLITS:
        raise ValueError(f"task batch split={split!r} is not allowed: expected one of {', '.join(SPLITS)}")
    tasks = tuple(family.validate(t, where=f"tasks[{i}]") for i, t in enumerate(obj["tasks"]))
    seed = obj.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"task batch seed={seed!r} is not allowed: expected an integer or null")
    return TaskBatch(family.name, split, tasks, seed)


def register_gym_envs() -> None:
    import gymnasium

    for name in FAMILIES:
        if gym_id(name) not in gymnasium.registry:
            gymnasium.register(id=gym_id(name), entry_point="envs.task_env:TaskEnv", kwargs={"family": name})
