"""``evaluation.video``: the comparison mp4 (frame count, grid layout, tiles that differ), its input checks and the GL
backend choice."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from envs.registry import make_family
from evaluation import video
from evaluation.video import choose_gl_backend, render_comparison

W, H = 320, 240  # the default tile: the puck is only a few pixels wide, smaller tiles would blur it away
SMALL = {"width": 160, "height": 120}  # for the tests that need no pixels compared


@pytest.fixture(scope="module")
def point():
    return make_family("point")


@pytest.fixture(scope="module")
def tasks(point):
    return list(point.sample(0, 2).tasks)


def _zero(task_index: int):
    return lambda obs, reward: np.zeros(2, np.float32)


def _to_plus_x(task_index: int):
    """Drive the puck to x = 0.4 and hold it there (in view of the camera)."""
    return lambda obs, reward: np.array([np.clip(4.0 * (0.4 - obs[0]) - obs[2], -1.0, 1.0), -obs[3]], np.float32)


POLICIES = [("zero", _zero), ("to x=0.4", _to_plus_x)]


@pytest.fixture(scope="module")
def clip(point, tasks, tmp_path_factory):
    """The video of 2 point tasks × 2 policies: ``(path, frames returned, decoded frames [T, h, w, 3])``."""
    out = tmp_path_factory.mktemp("video") / "cmp.mp4"
    n = render_comparison(point, tasks, POLICIES, out, width=W, height=H, progress=False)
    return out, n, iio.imread(out)


@pytest.fixture
def fresh_gl_choice():
    """``choose_gl_backend`` caches its answer; tests that change what it sees must not leak into others."""
    choose_gl_backend.cache_clear()
    yield
    choose_gl_backend.cache_clear()


def test_video_decodes_to_returned_frames_on_an_even_grid(point, clip):
    out, n, frames = clip
    assert n == point.episode_length
    assert frames.shape[0] == n
    _, h, w, _ = frames.shape
    assert w == 2 * W  # 2 policies side by side, no padding needed at an even tile width
    assert h % 2 == 0 and h > 2 * H  # 2 tasks stacked, each under a caption bar of the same height
    assert (h // 2) % 2 == 0
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # the temp file was renamed, not copied


def test_tiles_differ_between_policies(clip):
    _, _, frames = clip
    cell_h = frames.shape[1] // 2
    last = frames[-1].astype(np.int16)
    for row in range(2):
        tile = slice(row * cell_h + cell_h - H, (row + 1) * cell_h)  # below the caption bar
        left, right = last[tile, :W], last[tile, W:]
        # The pucks end in different places: two puck-sized blobs of pixels change (codec noise stays under 40).
        changed = int((np.abs(left - right).max(axis=2) > 40).sum())
        assert changed > 30, f"row {row}: tiles of the two policies look the same ({changed} pixels changed)"
    # The caption bars differ too (policy name), and the bars of the same column differ between tasks.
    bar_h = cell_h - H
    assert np.abs(last[:bar_h, :W] - last[:bar_h, W:]).max() > 100
    assert np.abs(last[:bar_h, :W] - last[cell_h : cell_h + bar_h, :W]).max() > 100


def test_no_captions_gives_bare_tiles(point, tasks, tmp_path):
    out = tmp_path / "bare.mp4"
    n = render_comparison(point, tasks[:1], POLICIES[:1], out, captions=False, progress=False, **SMALL)
    assert iio.imread(out).shape == (n, SMALL["height"], SMALL["width"], 3)


@pytest.mark.parametrize(
    ("name", "n_tasks", "match"),
    [
        ("cmp.avi", 2, "expected a .mp4 file"),
        ("missing/cmp.mp4", 2, "does not exist or is not writable"),
        ("cmp.mp4", 5, "tasks has 5 tasks: expected 1 to 4"),
    ],
)
def test_bad_input_is_a_one_line_error_and_writes_nothing(point, tmp_path, name, n_tasks, match):
    tasks = list(point.sample(0, n_tasks).tasks)
    with pytest.raises(ValueError, match=match) as e:
        render_comparison(point, tasks, POLICIES, tmp_path / name, progress=False, **SMALL)
    assert "\n" not in str(e.value)
    assert list(tmp_path.rglob("*")) == []


def test_bad_action_shape_writes_nothing(point, tasks, tmp_path):
    bad = [("bad", lambda i: lambda obs, reward: np.zeros(3, np.float32))]
    with pytest.raises(ValueError, match=r"policy 'bad' returned an action of shape \(3,\): expected \(2,\)"):
        render_comparison(point, tasks, bad, tmp_path / "cmp.mp4", progress=False, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_chosen_backend_renders_here(fresh_gl_choice):
    backend = choose_gl_backend()
    assert backend in ("egl", "osmesa", "glfw", "glx")
    assert video._probe_backend(backend)


def test_broken_preset_backend_names_the_packages(fresh_gl_choice, monkeypatch):
    # A real probe: the subprocess's mujoco rejects the value, as it would a backend whose libraries are missing.
    monkeypatch.setenv("MUJOCO_GL", "bogus")
    with pytest.raises(RuntimeError, match="apt-get install libegl1 libosmesa6") as e:
        choose_gl_backend()
    assert "MUJOCO_GL=bogus" in str(e.value) and "\n" not in str(e.value)


def test_fallback_order_and_error(fresh_gl_choice, monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    tried: list[str] = []

    def only_osmesa(backend: str) -> bool:
        tried.append(backend)
        return backend == "osmesa"

    monkeypatch.setattr(video, "_probe_backend", only_osmesa)
    assert choose_gl_backend() == "osmesa"
    assert tried == ["egl", "osmesa"]

    choose_gl_backend.cache_clear()
    monkeypatch.setattr(video, "_probe_backend", lambda backend: False)
    with pytest.raises(RuntimeError) as e:
        choose_gl_backend()
    assert str(e.value) == (
        "offscreen rendering needs EGL or OSMesa: install them (Debian/Ubuntu: apt-get install libegl1 libosmesa6) "
        "or set MUJOCO_GL"
    )
