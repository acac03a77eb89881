"""The four splits: ``val`` draws from the test region on a stream of its own, so tuning on val never sees a test
task; adding it changed no train, test or ood draw."""

from __future__ import annotations

import pytest

import envs
from envs.family import HELD_OUT, SPLITS

FAMILIES = list(envs.FAMILIES)


def key(task: dict) -> tuple:
    return tuple(sorted(task.items()))


@pytest.mark.parametrize("name", FAMILIES)
def test_val_draws_never_coincide_with_test_draws_and_lie_in_the_test_region(name):
    f = envs.make_family(name)
    val = [t for seed in range(50) for t in f.sample(seed, 20, "val").tasks]
    test = [t for seed in range(50) for t in f.sample(seed, 20, "test").tasks]
    assert not {key(t) for t in val} & {key(t) for t in test}
    assert all(f.in_split(t, "test") and f.in_split(t, "val") for t in val)
    assert not any(f.in_split(t, "ood") for t in val)


@pytest.mark.parametrize("name", FAMILIES)
def test_val_shares_train_s_region_but_not_its_draws(name):
    f = envs.make_family(name)
    assert f.split_regions("val") == f.split_regions("test") == f.train
    train, val = f.sample(5, 50, "train").tasks, f.sample(5, 50, "val").tasks
    assert not {key(t) for t in train} & {key(t) for t in val}


def test_train_test_and_ood_draws_are_the_ones_from_before_val_existed():
    # Computed with the code before the val split existed (streams train 0, test 1, ood 2). Saved runs and results
    # name their tasks by (seed, split): these numbers must never change.
    point, cheetah = envs.make_family("point"), envs.make_family("cheetah")
    assert point.sample(0, 1, "train").tasks[0] == {"goal_angle": 171.97965557679265, "goal_radius": 0.4888506996347092}
    assert point.sample(0, 1, "test").tasks[0] == {"goal_angle": 240.22947364509625, "goal_radius": 0.6899966351443584}
    assert point.sample(0, 1, "ood").tasks[0] == {"goal_angle": 108.65820383826855, "goal_radius": 1.3803867618713297}
    assert [cheetah.sample(0, 1, s).tasks[0]["target_velocity"] for s in ("train", "test", "ood")] == [
        1.2739233746429086,
        1.7794775825562685,
        2.310618029379891,
    ]
    terrain = envs.make_family("terrain").sample(0, 1, "test").tasks[0]
    assert (terrain["terrain_type"], terrain["terrain_seed"]) == ("slope", 889)


def test_held_out_names_every_split_but_train():
    assert SPLITS == ("train", "val", "test", "ood")
    assert HELD_OUT == ("val", "test", "ood") and envs.HELD_OUT == HELD_OUT


def test_a_val_batch_round_trips_through_json():
    batch = envs.make_family("door").sample(3, 4, "val")
    assert batch.split == "val" and envs.parse_task_batch(batch.to_json()) == batch
