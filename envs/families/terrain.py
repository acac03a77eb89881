"""``terrain``: a quadruped walks to a hidden goal across flat, rough, sloped, stepped or slippery ground.

The robot (``assets/terrain.xml``) is an Ant-like quadruped with radial legs, so it can walk in any direction
without turning. It starts at the origin facing +x; the goal lies ``goal_distance`` away along ``goal_angle``,
within 60° of straight ahead in training (a goal anywhere around made every fixed gait worth nothing on average
over the tasks, and meta-training found no gait to adapt: return ≈ 0 after 90 iterations).
The terrain is a straight track of box tiles laid along the goal direction (a floor plane elsewhere): the
tiles' positions, orientations, colours and friction are set per task, so every task compiles to the same
arrays and MuJoCo Warp can batch them (its worlds cannot differ in height-field data or geom types).

The policy sees proprioception and where the torso is and faces; the goal, the terrain type and difficulty
and the friction reach it only through reward, which is what meta-learning adapts to.
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
"""Level tiles' tops sit this far below their nominal height, so flush tiles hide under the floor and a foot
never touches two coincident surfaces; ice (low_friction) instead sits this far above the floor."""
ROUGH_AMPLITUDE = 0.06  # m at difficulty 1: tile tops uniform in [0, amplitude]
SLOPE_ANGLE = 12.0  # deg at difficulty 1
STAIR_RISE = 0.07  # m per tread at difficulty 1
SUCCESS_RADIUS = 0.4
UPRIGHT = 1.0
"""Reward per step for standing upright, as in gymnasium's Ant (``healthy_reward``): at 0.1 the policy
learned to lunge toward the goal and fall within 40 steps, since progress paid more than staying up."""
TILE_HALF_LENGTH = TILE / 2 / math.cos(math.radians(1.6 * SLOPE_ANGLE))
"""Tiles are this long (a little over ``TILE / 2``) so that the steepest slope's tilted tiles still meet; level
tiles overlap the next one by a few millimetres."""
TILE_HALF_HEIGHT = 0.75
"""Tall enough that every tile reaches below the floor: the track has no gaps underneath."""
RGBA = {
    "flat": (0.6, 0.6, 0.6, 1.0),
    "rough": (0.55, 0.45, 0.35, 1.0),
    "slope": (0.75, 0.62, 0.4, 1.0),
    "low_friction": (0.7, 0.85, 1.0, 1.0),
    "stairs": (0.5, 0.55, 0.68, 1.0),
}

_TRAIN = {
    "terrain_type": ("flat", "rough", "slope", "low_friction"),
    "difficulty": (0.0, 1.0),
    "friction": (0.6, 1.2),
    "goal_angle": (-60.0, 60.0),
    "goal_distance": (1.0, 2.5),
    "terrain_seed": (0, 999),
}


def ice_scale(difficulty: float) -> float:
    """Factor on ``friction`` for ``low_friction`` ground: 0.4 at difficulty 0, 0.18 at 1, 0.05 at 1.6."""
    return max(0.4 * (1.0 - 0.55 * difficulty), 0.02)


def track_heights(task: Task) -> tuple[np.ndarray, float]:
    """Heights of the tiles' top faces at their back edges (nearest the start) ``[N_ALONG, N_ACROSS]`` (m),
    and their pitch (rad: the slope's angle, 0 for every other type)."""
    kind, d = task["terrain_type"], task["difficulty"]
    if kind == "rough":
        u = np.random.default_rng(task["terrain_seed"]).uniform(0.0, 1.0, (N_ALONG, N_ACROSS))
        return ROUGH_AMPLITUDE * d * u, 0.0
    if kind == "slope":
        pitch = math.radians(SLOPE_ANGLE * d)
        return np.repeat((TILE * np.arange(N_ALONG) * math.tan(pitch))[:, None], N_ACROSS, axis=1), pitch
    if kind == "stairs":
        return np.repeat((STAIR_RISE * d * (np.arange(N_ALONG) + 1.0))[:, None], N_ACROSS, axis=1), 0.0
    return np.zeros((N_ALONG, N_ACROSS)), 0.0


def ground_friction(task: Task) -> float:
    return task["friction"] * (ice_scale(task["difficulty"]) if task["terrain_type"] == "low_friction" else 1.0)


def _heading(quat: torch.Tensor) -> torch.Tensor:
    """Unit horizontal direction of the torso's x-axis ``[B, 2]`` from its quaternion ``[B, 4]`` (w, x, y, z)."""
    w, x, y, z = quat.unbind(dim=1)
    h = torch.stack([1 - 2 * (y * y + z * z), 2 * (w * z + x * y)], dim=1)
    return h / h.norm(dim=1, keepdim=True).clamp_min(1e-6)


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
        Param(
            "goal_angle",
            "direction of the goal and the track from the start, counter-clockwise from +x (the way the robot faces)",
            -180.0,
            180.0,
            unit="deg",
        ),
        Param("goal_distance", "distance of the goal from the start", 1.0, 3.0, unit="m"),
        Param("terrain_seed", "seed of the rough terrain's tile heights", 0, 999, integer=True),
    )
    train = (_TRAIN,)
    ood = (
        region(_TRAIN, terrain_type=("stairs",)),  # a terrain never seen in training
        region(_TRAIN, terrain_type=("rough", "slope", "low_friction"), difficulty=(1.1, 1.6)),  # harder than any
    )
    varying_fields = frozenset(
        {"body_pos", "body_quat", "geom_pos", "geom_friction", "geom_rgba"}
        | {"cam_pos", "cam_quat", "cam_pos0", "cam_poscom0", "cam_mat0"}
    )
    episode_length = 250
    frame_skip = 8
    action_dim = 12
    obs_dim = 49
    success_doc = f"torso centre within {SUCCESS_RADIUS:g} m of the goal in the horizontal plane"
    reward_doc = (
        "progress: torso horizontal velocity (m/s) projected on the unit vector from the torso to the goal; "
        f"upright: {UPRIGHT:g}·(torso z-axis · world up); goal: +1 per step inside the success radius; "
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
        # joint target offset (rad) at action ±1: the actuators' symmetric ctrlrange
        self._scale = torch.as_tensor(m.actuator_ctrlrange[:, 1].copy())

    # ---- model -----------------------------------------------------------------------------------
    def base_spec(self) -> mujoco.MjSpec:
        """The asset plus the track's tiles. Each tile is a static body holding one box of fixed size: tasks
        move and tilt the bodies, so the per-body collision trees (``bvh_aabb``, not batchable) never change."""
        s = super().base_spec()
        for i in range(N_ALONG):
            for j in range(N_ACROSS):
                # massless with a fixed inertial frame: the world's centre of mass and the body's collision
                # tree, kept in that frame, stay the same for every task
                body = s.worldbody.add_body(
                    name=f"tile_{i}_{j}", explicitinertial=True, mass=0.0, ipos=[0, 0, 0], iquat=[1, 0, 0, 0]
                )
                # the body's origin is the middle of the top face's back edge: a task places a tile by where
                # its top surface starts, and a pitched tile tilts about that edge
                body.add_geom(
                    name=f"tile_{i}_{j}",
                    type=mujoco.mjtGeom.mjGEOM_BOX,
                    size=[TILE_HALF_LENGTH, TILE / 2, TILE_HALF_HEIGHT],
                    pos=[TILE_HALF_LENGTH, 0.0, -TILE_HALF_HEIGHT],
                    contype=0,
                    conaffinity=1,
                    priority=1,
                    mass=0.0,
                )
        return s

    def spec(self, task: Task) -> mujoco.MjSpec:
        s = self.base_spec()
        yaw = math.radians(task["goal_angle"])
        along = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        across = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
        up = np.array([0.0, 0.0, 1.0])
        backs, pitch = track_heights(task)
        kind = task["terrain_type"]
        lift = SINK if kind == "low_friction" else -SINK if pitch == 0.0 else 0.0
        quat = _quat(yaw, pitch)
        mu = ground_friction(task)
        for i in range(N_ALONG):
            for j in range(N_ACROSS):
                b = s.body(f"tile_{i}_{j}")
                b.pos = (
                    (TRACK_START + TILE * i) * along
                    + TILE * (j + 0.5 - N_ACROSS / 2) * across
                    + (backs[i, j] + lift) * up
                )
                b.quat = quat
                g = s.geom(f"tile_{i}_{j}")
                g.friction[0] = mu
                g.rgba = RGBA[kind]
        s.geom("floor").friction[0] = mu
        goal = task["goal_distance"] * along
        i_goal = int((task["goal_distance"] - TRACK_START) // TILE)
        ground = 0.0
        if 0 <= i_goal < N_ALONG:
            ground = backs[i_goal, N_ACROSS // 2 - 1 : N_ACROSS // 2 + 1].max() + max(lift, 0.0)
            ground += (task["goal_distance"] - TRACK_START - TILE * i_goal) * math.tan(pitch)
        s.geom("goal").pos = goal + (ground + 0.01) * up
        s.geom("goal_pole").pos = goal + (ground + 0.3) * up
        # a three-quarter view from behind and to the right of the track, aimed at its middle
        target = 1.2 * along + 0.2 * up
        eye = target - 2.5 * along - 2.2 * across + 2.6 * up
        fwd = (target - eye) / np.linalg.norm(target - eye)
        right = np.cross(fwd, up)
        right /= np.linalg.norm(right)
        cq = np.empty(4)
        mujoco.mju_mat2Quat(cq, np.stack([right, np.cross(right, fwd), -fwd], axis=1).flatten())
        cam = s.camera("task")
        cam.pos = eye
        cam.quat = cq
        return s

    # ---- batched hooks ---------------------------------------------------------------------------
    def reset(self, task: TaskTensors, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """The standing pose at the origin ``qpos [B, 19]`` with joint angles jittered by ±0.05 rad and the
        heading by ±0.05 rad, at rest ``qvel [B, 18]``. The start is level floor for every task."""
        like = next(iter(task.values()))
        b = like.shape[0]
        m = self.model0
        qpos = torch.as_tensor(m.qpos0, dtype=like.dtype, device=like.device).repeat(b, 1)
        yaw = torch.as_tensor(rng.uniform(-0.05, 0.05, b), dtype=like.dtype, device=like.device)
        qpos[:, 3], qpos[:, 6] = torch.cos(yaw / 2), torch.sin(yaw / 2)
        qpos[:, 7:] += torch.as_tensor(rng.uniform(-0.05, 0.05, (b, m.nq - 7)), dtype=like.dtype, device=like.device)
        return {"qpos": qpos, "qvel": torch.zeros(b, m.nv, dtype=like.dtype, device=like.device)}

    def control(self, action: torch.Tensor, state: SimState, task: TaskTensors) -> dict[str, torch.Tensor]:
        """Joint targets ``ctrl [B, 12]``: the standing pose (all zeros) plus the action times each actuator's
        ctrlrange bound (0.5 rad for hip yaw, 0.6 rad for hip pitch and knee)."""
        scale = self._scale.to(dtype=state.ctrl.dtype, device=state.ctrl.device)
        return {"ctrl": action.to(state.ctrl.dtype).clamp(-1, 1) * scale}

    def observe(self, state: SimState) -> torch.Tensor:
        """``[B, 49]``: joint angles from the standing pose (12, rad), joint velocities (12, rad/s × 0.1),
        gravity direction in the torso frame (3), torso angular velocity (3, rad/s × 0.25), torso linear
        velocity in its own frame (3, m/s), the last joint targets as actions in [-1, 1] (12), the torso's
        horizontal position (2, m) and heading (cos, sin of its yaw; 2). Position and heading are what a
        policy needs to steer to, and stop at, a goal it learns of only through reward (as in ProMP's ant-goal)."""
        sd = state.sensordata
        scale = self._scale.to(dtype=state.ctrl.dtype, device=state.ctrl.device)
        return torch.cat(
            [
                state.qpos[:, 7:],
                0.1 * state.qvel[:, 6:],
                -sd[:, self._up],
                0.25 * sd[:, self._gyro],
                sd[:, self._vel],
                state.ctrl / scale,
                state.qpos[:, :2],
                _heading(state.qpos[:, 3:7]),
            ],
            dim=1,
        )

    def _to_goal(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Horizontal vector from the torso to the goal ``[B, 2]``."""
        a = torch.deg2rad(task["goal_angle"])
        goal = task["goal_distance"][:, None] * torch.stack([torch.cos(a), torch.sin(a)], dim=1)
        return goal.to(state.xpos.dtype) - state.xpos[:, self._torso, :2]

    def reward_terms(self, state: SimState, action: torch.Tensor, task: TaskTensors) -> dict[str, torch.Tensor]:
        to_goal = self._to_goal(state, task)
        heading = to_goal / to_goal.norm(dim=1, keepdim=True).clamp_min(1e-6)
        inside = to_goal.norm(dim=1) < SUCCESS_RADIUS
        return {
            "progress": (state.qvel[:, :2] * heading).sum(dim=1),
            "upright": UPRIGHT * state.sensordata[:, self._up.stop - 1],
            "goal": inside.to(state.qpos.dtype),
            "control": -0.005 * action.to(state.qpos.dtype).clamp(-1, 1).square().sum(dim=1),
        }

    def success(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return self._to_goal(state, task).norm(dim=1) < SUCCESS_RADIUS

    def failed(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Bool ``[B]``: the torso is tilted more than ~78° from upright or has sunk to within 0.1 m of the
        mean height of its feet (a collapsed robot), both terrain-independent."""
        upright = state.sensordata[:, self._up.stop - 1]
        feet_z = state.site_xpos[:, self._feet, 2].mean(dim=1)
        return (upright < 0.2) | (state.xpos[:, self._torso, 2] - feet_z < 0.1)
