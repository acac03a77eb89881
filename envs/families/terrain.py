"""``terrain``: a quadruped walks to a hidden goal across flat, rough, sloped, stepped or slippery ground.

The robot (``assets/terrain.xml``) is an Ant-like quadruped with radial legs, so it can walk in any direction
without turning. It starts at the origin facing +x; the goal lies ``goal_distance`` away along ``goal_angle``.
The terrain is a straight track of box tiles laid along the goal direction (a floor plane elsewhere): the
tiles' positions, sizes, orientations and friction are set per task, so every task compiles to the same
arrays and MuJoCo Warp can batch them (its worlds cannot differ in height-field data or geom types).

The policy sees proprioception only; the goal, the terrain type and difficulty and the friction reach it
only through reward, which is what meta-learning adapts to.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import torch

from envs.family import Family, Param, SimState, Task, TaskTensors, region

TYPES = ("flat", "rough", "slope", "low_friction", "stairs")
TILE = 0.25
"""Side of a square tile (m); also the tread of one stair."""
N_ALONG, N_ACROSS = 14, 6
TRACK_START = 0.6
"""Distance from the origin to the track's first tile (m): the robot always starts on level floor."""
SINK = 0.005
"""Level tiles sit this far below the floor so a foot on them never touches two coincident surfaces; ice
(low_friction) sits this far above it."""
ROUGH_AMPLITUDE = 0.06  # m at difficulty 1: tile tops uniform in [0, amplitude]
SLOPE_ANGLE = 12.0  # deg at difficulty 1
STAIR_RISE = 0.07  # m per tread at difficulty 1
SUCCESS_RADIUS = 0.4
SCALE = (0.5, 0.6, 0.6) * 4
"""Joint target offset (rad) at action ±1 for (hip yaw, hip pitch, knee) of each leg: the actuators' ctrlrange."""

_TRAIN = {
    "terrain_type": ("flat", "rough", "slope", "low_friction"),
    "difficulty": (0.0, 1.0),
    "friction": (0.6, 1.2),
    "goal_angle": (0.0, 360.0),
    "goal_distance": (1.0, 2.5),
    "terrain_seed": (0, 999),
}


def ice_scale(difficulty: float) -> float:
    """Factor on ``friction`` for ``low_friction`` ground: 0.4 at difficulty 0, 0.18 at 1, 0.05 at 1.6."""
    return max(0.4 * (1.0 - 0.55 * difficulty), 0.02)


def track_heights(task: Task) -> tuple[np.ndarray, float]:
    """Top heights of the tiles ``[N_ALONG, N_ACROSS]`` at their centres (m, before sinking level tiles), and
    their pitch (rad, the slope's angle; 0 for every other type)."""
    kind, d = task["terrain_type"], task["difficulty"]
    s = TRACK_START + TILE * (np.arange(N_ALONG) + 0.5)
    if kind == "rough":
        u = np.random.default_rng(task["terrain_seed"]).uniform(0.0, 1.0, (N_ALONG, N_ACROSS))
        return ROUGH_AMPLITUDE * d * u, 0.0
    if kind == "slope":
        pitch = math.radians(SLOPE_ANGLE * d)
        return np.repeat(((s - TRACK_START) * math.tan(pitch))[:, None], N_ACROSS, axis=1), pitch
    if kind == "stairs":
        return np.repeat((STAIR_RISE * d * (np.arange(N_ALONG) + 1.0))[:, None], N_ACROSS, axis=1), 0.0
    return np.zeros((N_ALONG, N_ACROSS)), 0.0


def ground_friction(task: Task) -> float:
    return task["friction"] * (ice_scale(task["difficulty"]) if task["terrain_type"] == "low_friction" else 1.0)


def _quat(yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Rotation by ``yaw`` about world z, then tilting the local +x axis up by ``pitch``: ``[4]`` (w, x, y, z)."""
    q = np.empty(4)
    mujoco.mju_mulQuat(
        q,
        np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]),
        np.array([math.cos(pitch / 2), 0.0, -math.sin(pitch / 2), 0.0]),
    )
    return q


class Terrain(Family):
    name = "terrain"
    description = (
        "Ant-like quadruped walking to a hidden goal across a track of flat, rough, sloped, stepped or icy tiles; "
        "terrain type, difficulty, friction and the goal's direction and distance vary."
    )
    asset = "terrain.xml"
    params = (
        Param("terrain_type", "kind of ground along the track to the goal", choices=TYPES),
        Param(
            "difficulty",
            f"rough: tile heights up to {ROUGH_AMPLITUDE:g} m·d; slope: ramp at {SLOPE_ANGLE:g}°·d; "
            f"stairs: {STAIR_RISE:g} m·d rise per {TILE:g} m tread; low_friction: ground friction × "
            "max(0.4·(1 − 0.55·d), 0.02); flat: no effect",
            0.0,
            1.6,
        ),
        Param("friction", "sliding friction of the ground (floor and track)", 0.3, 1.5),
        Param("goal_angle", "direction of the goal and the track from the start, counter-clockwise from +x", 0.0, 360.0,
              unit="deg"),
        Param("goal_distance", "distance of the goal from the start", 1.0, 3.0, unit="m"),
        Param("terrain_seed", "seed of the rough terrain's tile heights", 0, 999, integer=True),
    )
    train = (_TRAIN,)
    ood = (
        region(_TRAIN, terrain_type=("stairs",)),  # a terrain never seen in training
        region(_TRAIN, terrain_type=("rough", "slope", "low_friction"), difficulty=(1.1, 1.6)),  # harder than any
    )
    varying_fields = frozenset(
        {"geom_pos", "geom_quat", "geom_size", "geom_friction", "geom_rgba", "geom_aabb", "geom_rbound"}
        | {"cam_pos", "cam_quat", "cam_pos0", "cam_poscom0", "cam_mat0"}
    )
    episode_length = 250
    frame_skip = 8
    action_dim = 12
    obs_dim = 45
    success_doc = f"torso centre within {SUCCESS_RADIUS:g} m of the goal in the horizontal plane"
    reward_doc = (
        "progress: torso horizontal velocity (m/s) projected on the unit vector from the torso to the goal; "
        "upright: 0.1·(torso z-axis · world up); goal: +1 per step inside the success radius; "
        "control: -0.005·|a|²"
    )
    scripted_success = None

    def __init__(self) -> None:
        super().__init__()
        m = self.model0
        self._torso = m.body("torso").id
        self._feet = [m.site(f"foot_{leg}").id for leg in ("fl", "fr", "bl", "br")]
        up = m.sensor("up")
        self._up = slice(up.adr[0], up.adr[0] + 3)
        gyro, vel = m.sensor("gyro"), m.sensor("vel")
        self._gyro = slice(gyro.adr[0], gyro.adr[0] + 3)
        self._vel = slice(vel.adr[0], vel.adr[0] + 3)
        self._scale = torch.tensor(SCALE, dtype=torch.float64)

    # ---- model -----------------------------------------------------------------------------------
    def base_spec(self) -> mujoco.MjSpec:
        s = super().base_spec()
        for i in range(N_ALONG):
            for j in range(N_ACROSS):
                s.worldbody.add_geom(
                    name=f"tile_{i}_{j}",
                    type=mujoco.mjtGeom.mjGEOM_BOX,
                    size=[TILE / 2, TILE / 2, 0.1],
                    contype=0,
                    conaffinity=1,
                    priority=1,
                )
        return s

    def spec(self, task: Task) -> mujoco.MjSpec:
        s = self.base_spec()
        yaw = math.radians(task["goal_angle"])
        along = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        across = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        up = np.array([0.0, 0.0, 1.0])
        tops, pitch = track_heights(task)
        kind = task["terrain_type"]
        if kind in ("flat", "slope", "stairs") or (kind == "rough" and task["difficulty"] == 0.0):
            pass
        offset = SINK if kind == "low_friction" else -SINK
        mu = ground_friction(task)
        rgba = {
            "flat": (0.6, 0.6, 0.6, 1),
            "rough": (0.55, 0.45, 0.35, 1),
            "slope": (0.7, 0.6, 0.4, 1),
            "low_friction": (0.7, 0.85, 1.0, 1),
            "stairs": (0.5, 0.55, 0.65, 1),
        }[kind]
        quat = _quat(yaw, pitch)
        normal = np.array([-math.sin(pitch), 0.0, math.cos(pitch)])
        normal = normal[0] * along + normal[2] * up
        for i in range(N_ALONG):
            for j in range(N_ACROSS):
                top = tops[i, j] + (offset if pitch == 0.0 else 0.0)
                # tall enough that every tile reaches below the floor: the track has no gaps underneath
                half_h = 0.5 * max(top, 0.0) + 0.1
                centre = (
                    (TRACK_START + TILE * (i + 0.5)) * along
                    + TILE * (j + 0.5 - N_ACROSS / 2) * across
                    + top * up
                    - half_h * normal
                )
                g = s.geom(f"tile_{i}_{j}")
                g.pos = centre
                g.quat = quat
                g.size = [TILE / 2 / math.cos(pitch), TILE / 2, half_h]
                g.friction[0] = mu
                g.rgba = rgba
        s.geom("floor").friction[0] = mu
        goal = task["goal_distance"] * along
        i_goal = min(int((task["goal_distance"] - TRACK_START) // TILE), N_ALONG - 1)
        ground = max(tops[i_goal, N_ACROSS // 2 - 1 : N_ACROSS // 2 + 1].max(), 0.0) if i_goal >= 0 else 0.0
        s.geom("goal").pos = goal + (ground + 0.01) * up
        s.geom("goal_pole").pos = goal + (ground + 0.3) * up
        # a three-quarter view from behind and to the right of the track, aimed at its middle
        target = 1.5 * along + 0.3 * up
        eye = target - 2.6 * along - 2.0 * across + 2.6 * up
        fwd = (target - eye) / np.linalg.norm(target - eye)
        right = np.cross(fwd, up)
        right /= np.linalg.norm(right)
        cam_up = np.cross(right, fwd)
        mat = np.stack([right, cam_up, -fwd], axis=1)
        cq = np.empty(4)
        mujoco.mju_mat2Quat(cq, mat.flatten())
        cam = s.camera("task")
        cam.pos = eye
        cam.quat = cq
        return s
