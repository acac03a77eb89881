"""Side-by-side videos of policies on tasks (e.g. before and after adaptation), and the choice of GL backend.

``render_comparison`` writes one mp4 whose grid has a row per task and a column per policy; above every tile a
caption bar names the task's parameters, the policy and whether its episode succeeded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from envs.family import Family, Task, TaskBatch
from envs.files import atomic_path
from envs.render import caption
from envs.task_env import TaskEnv, make_renderer

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont, ImageFont

Policy = Callable[[int], Callable[[np.ndarray, float], np.ndarray]]
"""``policy(task_index)``, called at an episode's start, gives the episode's ``act(obs [obs_dim] float32, reward) ->
action [action_dim]``: a policy's deterministic action for the task, called at every step in order with the previous
step's reward (0 at the first), so a policy with a memory (RL²) can keep it through the episode."""

MAX_TASKS = 4
GL_BACKENDS = ("egl", "osmesa")
GL_HELP = (
    "offscreen rendering needs EGL or OSMesa: install them (Debian/Ubuntu: apt-get install libegl1 libosmesa6) "
    "or set MUJOCO_GL"
)
# Makes a tiny offscreen renderer and draws one frame: what render_comparison needs from the backend.
_PROBE = (
    "import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco/>'); "
    "r = mujoco.Renderer(m, 16, 16); r.update_scene(mujoco.MjData(m)); r.render(); r.close()"
)

# Caption bars: light text on a dark bar; the outcome in green or red so it reads at a glance.
_BAR_RGB = (32, 32, 32)
_TEXT_RGB = (235, 235, 235)
_SUCCESS_RGB = (90, 220, 90)
_FAIL_RGB = (240, 90, 80)
_PAD = 4  # pixels between the bar's edge and its text


def _probe_backend(backend: str) -> bool:
    """Whether ``MUJOCO_GL=backend`` renders offscreen, tried in a subprocess: a broken backend may segfault."""
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@functools.cache
def choose_gl_backend() -> str:
    """The offscreen GL backend to use (``MUJOCO_GL``'s value): the one already set in ``MUJOCO_GL`` if it renders,
    else the first of EGL and OSMesa that renders. Each is tried in a subprocess (about half a second, once per
    process: the answer is cached).

    This does not set ``MUJOCO_GL``: MuJoCo reads it when first imported, so a caller that wants the choice
    applied sets it before that (``envs`` already picks ``egl`` when there is no display).

    :raises RuntimeError: no backend renders; the message names the packages to install.
    """
    preset = os.environ.get("MUJOCO_GL")
    if preset:
        if _probe_backend(preset):
            return preset
        raise RuntimeError(f"MUJOCO_GL={preset} cannot render offscreen; {GL_HELP}")
    for backend in GL_BACKENDS:
        if _probe_backend(backend):
            return backend
    raise RuntimeError(GL_HELP)


def _font(size: int) -> FreeTypeFont | ImageFont:
    """A scalable font at ``size`` pixels: matplotlib's DejaVu Sans (always installed with matplotlib, and it has
    the em dash), else Pillow's built-in font."""
    from matplotlib import font_manager
    from PIL import ImageFont

    try:
        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"), fallback_to_default=True)
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size)


def _caption_bar(
    task_lines: list[str], policy: str, success: bool, width: int, height: int, font: FreeTypeFont | ImageFont
) -> np.ndarray:
    """The caption bar above one tile, ``[height, width, 3]`` uint8: the task's parameters, then the policy's name
    and its outcome. Drawn once per tile with Pillow; every frame pastes the same pixels."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), _BAR_RGB)
    draw = ImageDraw.Draw(img)
    draw.line([(0, 0), (0, height - 1)], fill=(90, 90, 90))  # separates the bars of neighbouring columns
    line_h = _line_height(font)
    y = _PAD
    for line in task_lines:
        draw.text((_PAD, y), line, fill=_TEXT_RGB, font=font)
        y += line_h
    head = f"{policy} — "
    draw.text((_PAD, y), head, fill=_TEXT_RGB, font=font)
    x = _PAD + draw.textlength(head, font=font)
    draw.text((x, y), "success" if success else "fail", fill=_SUCCESS_RGB if success else _FAIL_RGB, font=font)
    return np.asarray(img, dtype=np.uint8)


def _line_height(font: FreeTypeFont | ImageFont) -> int:
    """Pixels from one caption line's top to the next's."""
    top, bottom = font.getbbox("Ag—")[1::2]
    return int(bottom - top) + 3


def _check_out_path(out_path: str | os.PathLike) -> Path:
    out = Path(out_path)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"out_path={str(out)!r} is not allowed: expected a .mp4 file")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise ValueError(f"out_path={str(out)!r} is not allowed: folder {out.parent} does not exist or is not writable")
    return out


def _rollout(env: TaskEnv, policy: Policy, task_index: int, name: str, seed: int) -> tuple[list[np.ndarray], bool]:
    """One episode of ``policy`` without rendering: its actions (each ``[action_dim]`` float32) and its outcome."""
    obs, _ = env.reset(seed=seed)
    act, reward = policy(task_index), 0.0
    actions, info = [], {"is_success": False}
    for _ in range(env.family.episode_length):
        action = np.asarray(act(obs, reward), dtype=np.float32)
        if action.shape != (env.family.action_dim,):
            raise ValueError(
                f"policy {name!r} returned an action of shape {action.shape}: expected ({env.family.action_dim},)"
            )
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return actions, bool(info["is_success"])


def render_comparison(
    family: Family,
    tasks: Sequence[Task] | TaskBatch,
    policies: Sequence[tuple[str, Policy]],
    out_path: str | os.PathLike,
    captions: bool | Sequence[str] = True,
    fps: int | None = None,
    width: int = 320,
    height: int = 240,
    seed: int = 0,
    progress: bool = True,
) -> int:
    """Write an mp4 of every policy on every task, side by side, and return its number of frames.

    :param family: the task family.
    :param tasks: up to 4 task dicts (or a ``TaskBatch``): the grid's rows.
    :param policies: ``(name, policy)`` pairs (:data:`Policy`): the grid's columns. ``policy(task_index)`` gives the
        episode's ``act(obs, reward)``, which maps an observation ``[obs_dim]`` float32 (and the previous reward) to
        that policy's deterministic action ``[action_dim]`` for ``tasks[task_index]``.
    :param out_path: the ``.mp4`` to write (atomically: nothing appears there unless the whole video is written).
    :param captions: ``True``: a caption bar above each tile with the task's parameters, the policy's name and
        whether its episode succeeded; a list of strings (one per task, ``\n`` for line breaks): those instead of
        the parameters; ``False``: no caption bars.
    :param fps: frames per second of the video; ``None``: the family's control rate (one frame per control step).
    :param width: width of one tile in pixels.
    :param height: height of one tile in pixels.
    :param seed: seed of every episode's reset (the same start for every policy, so the tiles compare).
    :param progress: show tqdm progress bars (rollouts, then frames).
    :returns: the number of frames written, always the family's ``episode_length``: an episode that ends early
        holds its last frame.

    The frame is ``[rows·(bar + height), cols·width, 3]`` (the caption bar's height is the same for all tiles),
    padded by one black pixel row/column where needed to be even, as libx264's yuv420p needs.

    Each episode runs twice: once to learn its outcome (for the caption, which is on screen from the first
    frame), then again replaying the same actions from the same reset while rendering, all tiles in lockstep so
    only one frame is ever held in memory. MuJoCo is deterministic, so the replay is the same episode; that is
    checked.
    """
    out = _check_out_path(out_path)
    tasks = list(tasks.tasks if isinstance(tasks, TaskBatch) else tasks)
    if not 1 <= len(tasks) <= MAX_TASKS:
        raise ValueError(f"tasks has {len(tasks)} tasks: expected 1 to {MAX_TASKS}")
    policies = list(policies)
    if not policies:
        raise ValueError("policies is empty: expected at least one (name, fn) pair")
    for p in policies:
        if not (isinstance(p, tuple | list) and len(p) == 2 and isinstance(p[0], str) and callable(p[1])):
            raise ValueError(f"policies entry {p!r} is not allowed: expected a (name: str, fn: callable) pair")
    if not isinstance(captions, bool):
        captions = [str(c) for c in captions]
        if len(captions) != len(tasks):
            raise ValueError(
                f"captions has {len(captions)} entries: expected True, False or one per task ({len(tasks)})"
            )
    if fps is not None and fps <= 0:
        raise ValueError(f"fps={fps} is not allowed: expected a positive integer or None")
    if width < 16 or height < 16:
        raise ValueError(f"width={width}, height={height} is not allowed: expected at least 16 pixels each")
    try:
        import imageio.v2 as imageio
    except ImportError as e:
        raise RuntimeError("writing mp4 needs imageio and imageio-ffmpeg: pip install imageio imageio-ffmpeg") from e
    from tqdm.auto import tqdm

    choose_gl_backend()  # a clear error now, rather than a crash inside the first renderer
    n_steps = family.episode_length
    rows, cols = len(tasks), len(policies)
    # One env per tile: the render pass steps them all in lockstep.
    envs = [[TaskEnv(family, task) for _ in policies] for task in tasks]
    renderers: list[mujoco.Renderer] = []
    try:
        plans, outcomes = {}, {}
        with tqdm(total=rows * cols, desc="video rollouts", unit="episode", disable=not progress) as bar:
            for i in range(rows):
                for j, (name, fn) in enumerate(policies):
                    plans[i, j], outcomes[i, j] = _rollout(envs[i][j], fn, i, name, seed)
                    bar.update()

        bar_h, bars = 0, {}
        if captions is not False:
            font = _font(max(9, round(width / 29)))
            chars = max(12, int((width - 2 * _PAD) / font.getlength("x")))
            texts = (
                captions if isinstance(captions, list) else [caption(envs[i][0].task, width=chars) for i in range(rows)]
            )
            task_lines = [text.split("\n") for text in texts]
            n_lines = max(len(lines) for lines in task_lines) + 1
            bar_h = 2 * _PAD + n_lines * _line_height(font)
            bar_h += bar_h % 2  # keeps every tile's top on an even row
            for i in range(rows):
                for j, (name, _) in enumerate(policies):
                    bars[i, j] = _caption_bar(task_lines[i], name, outcomes[i, j], width, bar_h, font)

        cell_h = bar_h + height
        frame = np.zeros((rows * cell_h + (rows * cell_h) % 2, cols * width + (cols * width) % 2, 3), np.uint8)
        for (i, j), img in bars.items():
            frame[i * cell_h : i * cell_h + bar_h, j * width : (j + 1) * width] = img

        for i in range(rows):
            for j in range(cols):
                envs[i][j].reset(seed=seed)
                r = make_renderer(envs[i][j].model, height, width)
                # Shadows and reflections cost ~35 of the ~40 ms of a 320×240 frame in software GL (measured) and
                # add nothing to a comparison; scene flags persist across update_scene, so setting them once suffices.
                r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
                r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
                renderers.append(r)

        rate = fps if fps is not None else round(1 / envs[0][0].control_dt)
        with (
            atomic_path(out) as tmp,
            contextlib.closing(
                # macro_block_size=1: frames are already even-sized; imageio would otherwise rescale to multiples of 16
                imageio.get_writer(tmp, format="FFMPEG", fps=rate, codec="libx264", macro_block_size=1)
            ) as writer,
        ):
            for t in tqdm(range(n_steps), desc="video frames", unit="frame", disable=not progress):
                for i in range(rows):
                    for j in range(cols):
                        if t >= len(plans[i, j]):
                            continue  # the episode ended: its tile holds the last frame
                        env = envs[i][j]
                        _, _, _, _, info = env.step(plans[i, j][t])
                        if t == len(plans[i, j]) - 1 and bool(info["is_success"]) != outcomes[i, j]:
                            raise RuntimeError(
                                f"task {i}, policy {policies[j][0]!r}: the replayed episode's outcome differs "
                                "from the first run's; is the simulation non-deterministic?"
                            )
                        r = renderers[i * cols + j]
                        r.update_scene(env.data, camera=family.camera)
                        y = i * cell_h + bar_h
                        frame[y : y + height, j * width : (j + 1) * width] = r.render()
                writer.append_data(frame)
        return n_steps
    finally:
        for r in renderers:
            r.close()
        for row in envs:
            for env in row:
                env.close()
