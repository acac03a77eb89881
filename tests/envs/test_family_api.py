"""The family API's contract: task batches round-trip through JSON, and bad input gets a one-line
``ValueError`` naming the field and what is allowed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import envs
import envs.family
from envs.families.point import Point
from envs.family import Param, TaskBatch, region
from envs.registry import parse_task_batch
from envs.task_env import TaskEnv


def test_task_batch_round_trips_through_json():
    batch = envs.make_family("point").sample(0, 5, "ood")
    assert parse_task_batch(batch.to_json()) == batch


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: envs.make_family("drawer"), "family='drawer' is not known: expected one of grasp, terrain, door"),
        (
            lambda: envs.make_family("point").sample(0, 3, "validation"),
            "split='validation' is not allowed: expected one of train, val, test, ood",
        ),
        (lambda: envs.make_family("point").sample(0, 0, "train"), "n=0 is not allowed"),
        (
            lambda: envs.make_family("point").validate({"goal_angle": 400.0, "goal_radius": 1.0}),
            "task.goal_angle=400.0 is not allowed: expected a number in [0, 360] deg",
        ),
        (
            lambda: envs.make_family("point").validate({"goal_angle": "north", "goal_radius": 1.0}),
            "task.goal_angle='north' is not allowed",
        ),
        (lambda: envs.make_family("point").validate({"goal_angle": 10.0}), "task.goal_radius is missing"),
        (
            lambda: envs.make_family("point").validate({"goal_angle": 1.0, "goal_radius": 1.0, "mass": 2}),
            "task.mass is not a parameter of point",
        ),
        (lambda: parse_task_batch("{not json"), "task batch is not valid JSON"),
        (lambda: parse_task_batch('{"family": "point", "split": "train"}'), "task batch must be a JSON object"),
        (
            lambda: parse_task_batch('{"family": "point", "split": "train", "tasks": []}'),
            "task batch tasks=[] is not allowed: expected at least one task",
        ),
        (
            lambda: parse_task_batch('{"family": "point", "split": "train", "tasks": [{"goal_angle": 1}]}'),
            "tasks[0].goal_radius is missing",
        ),
        (
            lambda: parse_task_batch('{"family": ["point"], "split": "train", "tasks": [{}]}'),
            "task batch family=['point'] is not known: expected one of grasp",
        ),
        (
            lambda: parse_task_batch('{"family": "point", "split": "validation", "tasks": [{}]}'),
            "task batch split='validation' is not allowed: expected one of train, val, test, ood",
        ),
        (lambda: TaskEnv("point", render_mode="human"), "render_mode='human' is not allowed"),
    ],
)
def test_bad_input_raises_one_line_value_error_naming_the_field(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_family_module_does_not_import_the_registry():
    """The registry imports envs.family; a function-level import back would be a cycle. Parsing a task batch, which
    needs a family by name, is the registry's job (parse_task_batch)."""
    tree = ast.parse(Path(envs.family.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("envs")}
    assert not hasattr(TaskBatch, "from_json")


def test_category_outside_the_family_is_refused():
    p = Param("shape", "object shape", choices=("box", "sphere"))
    with pytest.raises(ValueError) as e:
        p.check("cone")
    assert str(e.value) == "task.shape='cone' is not allowed: expected one of 'box', 'sphere'"


def test_family_with_an_ood_region_overlapping_train_is_refused():
    class Leaky(Point):
        ood = (region(Point.train[0], goal_radius=(0.9, 1.5)),)  # overlaps train's radius 0.3–1.0

    with pytest.raises(TypeError, match="overlaps a train region"):
        Leaky()


def test_point_goal_moves_where_the_puck_succeeds():
    near = TaskEnv("point", {"goal_angle": 0.0, "goal_radius": 0.5})
    far = TaskEnv("point", {"goal_angle": 180.0, "goal_radius": 0.5})
    for env in (near, far):
        env.reset(seed=0)
        for _ in range(30):
            _, _, _, _, info = env.step([1.0, 0.0])  # drive along +x
    assert near.data.qpos[0] > 0.5
    assert info["is_success"] is False  # the goal at 180° is behind the puck
    near.reset(seed=0)
    solved = False
    for _ in range(20):
        solved |= near.step([1.0, 0.0])[4]["success"]
    assert solved


def test_cheetah_target_velocity_changes_the_reward_of_the_same_motion():
    slow, fast = (TaskEnv("cheetah", {"target_velocity": v}) for v in (0.0, 2.0))
    returns = []
    for env in (slow, fast):
        env.reset(seed=0)
        returns.append(sum(env.step([0.0] * 6)[1] for _ in range(20)))  # standing still
    assert returns[0] > returns[1] + 20 * 1.5
