"""``python -m envs``: lists the families, shows one, renders a grid image; bad input exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import envs
from envs.registry import parse_task_batch


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envs", *args], capture_output=True, text=True, timeout=300)


def test_list_names_every_family_with_its_splits():
    out = run("list")
    assert out.returncode == 0, out.stderr
    for name in envs.FAMILIES:
        assert f"\n{name} " in "\n" + out.stdout
    assert out.stdout.count("ood:") == len(envs.FAMILIES)


def test_show_json_describes_the_family():
    out = run("show", "point", "--json")
    d = json.loads(out.stdout)
    assert d["name"] == "point" and {p["name"] for p in d["params"]} == {"goal_angle", "goal_radius"}


def test_sample_prints_a_task_batch_that_parses_back():
    out = run("sample", "point", "--split", "ood", "--n", "3", "--seed", "4")
    batch = parse_task_batch(out.stdout)
    assert batch == envs.make_family("point").sample(4, 3, "ood")


def test_sample_draws_from_the_val_split():
    out = run("sample", "door", "--split", "val", "--n", "20")
    assert out.returncode == 0, out.stderr
    batch = parse_task_batch(out.stdout)
    assert batch.split == "val" and batch == envs.make_family("door").sample(0, 20, "val")
    assert batch != envs.make_family("door").sample(0, 20, "test")


@pytest.mark.parametrize("args", [("list",), ("show", "door")])
def test_list_and_show_say_val_and_test_draw_from_the_train_regions(args):
    out = run(*args)
    assert out.returncode == 0, out.stderr
    assert "train, val and test draw from the train regions" in out.stdout
    assert "val:" not in out.stdout and "test:" not in out.stdout  # no regions of their own


def test_render_writes_a_grid_whose_tiles_differ(tmp_path):
    import matplotlib.image

    out_png = tmp_path / "p.png"
    out = run("render", "point", "--split", "ood", "--n", "4", "--out", str(out_png))
    assert out.returncode == 0, out.stderr
    img = matplotlib.image.imread(out_png)
    h, w = img.shape[0] // 2, img.shape[1] // 2
    tiles = [img[r * h : (r + 1) * h, c * w : (c + 1) * w] for r in (0, 1) for c in (0, 1)]
    assert all(np.abs(a - b).mean() > 1e-3 for i, a in enumerate(tiles) for b in tiles[i + 1 :])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "drawer"), "invalid choice: 'drawer'"),
        (("render", "point", "--split", "validation", "--out", "x.png"), "invalid choice: 'validation'"),
        (("render", "point", "--n", "0", "--out", "x.png"), "argument --n: 0 is below 1"),
        (("render", "point", "--out", "/no/such/dir/x.png"), "folder /no/such/dir does not exist"),
        (("render", "point", "--out", "x.jpg"), "expected a .png file"),
        (("render", "point", "--tasks", "missing.json", "--out", "x.png"), "--tasks missing.json cannot be read"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_error(args, message, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "envs", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("python -m envs")
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{oops", "task batch is not valid JSON"),
        (
            '{"family": "point", "split": "ood", "tasks": [{"goal_angle": 1.0, "goal_radius": 9.0}]}',
            "tasks[0].goal_radius=9.0 is not allowed: expected a number in [0.3, 1.5] m",
        ),
        (
            envs.make_family("door").sample(0, 1, "ood").to_json(),
            "holds door tasks, not point tasks",
        ),
    ],
)
def test_render_refuses_a_bad_task_file_with_exit_2(text, message, tmp_path):
    (tmp_path / "tasks.json").write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "envs", "render", "point", "--tasks", "tasks.json", "--out", "x.png"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and message in out.stderr
    assert not (tmp_path / "x.png").exists()


def test_render_draws_the_tasks_of_a_given_file(tmp_path):
    (tmp_path / "tasks.json").write_text(run("sample", "point", "--n", "2").stdout)
    out = run("render", "point", "--tasks", str(tmp_path / "tasks.json"), "--out", str(tmp_path / "x.png"))
    assert out.returncode == 0 and "wrote" in out.stdout and "2 train tasks" in out.stdout
