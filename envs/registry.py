"""Family names → family instances, and the gymnasium ids ``robometa/<Name>-v0``."""

from __future__ import annotations

import importlib
from functools import cache

from envs.family import Family

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


def register_gym_envs() -> None:
    import gymnasium

    for name in FAMILIES:
        if gym_id(name) not in gymnasium.registry:
            gymnasium.register(id=gym_id(name), entry_point="envs.task_env:TaskEnv", kwargs={"family": name})
