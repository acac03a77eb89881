"""``grasp``: a Cartesian arm with a two-finger gripper lifts an object off a table to a hidden height.

The object's shape, size, mass and friction and the target height vary between tasks and are hidden from
the policy, which sees only the hand, the finger opening and the object's position and velocity (what a
camera and the robot's own joints give). A tall object must be gripped higher than a squat one, a heavy or
slippery one lifted gently or it slides out of the grip, and the height to stop at must be found from reward.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import torch

from envs.family import Family, Param, SimState, Task, TaskTensors, region

SHAPES = ("box", "cylinder", "sphere", "capsule", "ellipsoid")
# Half-extents of each shape in units of the task's `size` (its half-width across the fingers at yaw 0):
# x, y, z of the shape's bounding box in its own frame. Capsule: radius `size`, cylinder part 0.8·size.
_EXTENT = {
    "box": (1.0, 1.0, 1.0),
    "cylinder": (1.0, 1.0, 1.25),
    "sphere": (1.0, 1.0, 1.0),
    "capsule": (1.0, 1.0, 1.8),
    "ellipsoid": (1.4, 1.0, 0.8),
}
_HALF_HEIGHT = tuple(_EXTENT[s][2] for s in SHAPES)
_COLOUR = {
    "box": (0.2, 0.45, 0.85, 1.0),
    "cylinder": (0.9, 0.6, 0.15, 1.0),
    "sphere": (0.6, 0.3, 0.75, 1.0),
    "capsule": (0.15, 0.7, 0.7, 1.0),
    "ellipsoid": (0.85, 0.25, 0.5, 1.0),
}
# Inactive shape geoms shrink to this half-size at the object's centre: with the smallest active shape
# reaching 0.8 · 0.02 m from its centre, a pad or the table would have to sink 15 mm into it to touch them.
_SPECK = 1e-3

# gripper.xml's grip servo (kp 600) squeezes with kp·q, and the finger coupling splits that between the pads:
# a 2 cm object would feel 5 N per pad, too little to lift the heavier objects. A stiffer servo reaches the
# servo's 25 N force cap (12.5 N per pad) on every object, for every task of this family alike.
_GRIP_KP = 1500.0
_GRIP_FORCE = 25.0  # the grip servo's forcerange (gripper.xml)
_LIFTED = 0.01  # object centre this far (m) above its resting height: off the table
# Hand velocity (m/s) at action 1: half gripper.xml's ctrlrange. At 0.5 m/s the exploration noise of a fresh policy
# (σ = 1) jerks a gripped object out of the pads: the scripted controller with noise σ = 0.7 added to its hand
# actions once the object is up still held it at t = 100 in only 52 % of train tasks.
_HAND_SPEED = 0.25
_MAX_FINGER = 0.05  # finger joint range and the grip servo's open target (gripper.xml)
_PAD_GAP0 = 0.008  # distance between the pads' inner faces when both finger joints are at 0
_PALM_CLEARANCE = 0.03  # hand origin → just below the palm's underside: the object's top must stay under it
_FINGER_FLOOR = 0.042  # lowest hand height that keeps the pad tips (0.04 below the hand) off the table

_TRAIN = {
    "shape": ("box", "cylinder", "sphere"),
    "size": (0.02, 0.035),
    "mass": (0.05, 0.5),
    "friction": (0.5, 1.0),
    "obj_x": (-0.15, 0.15),
    "obj_y": (-0.15, 0.15),
    "obj_yaw": (-30.0, 30.0),
    "target_height": (0.1, 0.25),
}

SUCCESS_TOL = 0.025
"""Object centre within this distance (m) of the target height when the episode ends."""


class Grasp(Family):
    """Action ``[B, 4]`` in ``[-1, 1]``: hand velocity x, y, z (±1 is ±0.25 m/s) and the grip servo's target
    (+1 fully open, −1 closed: the pads then squeeze whatever lies between them with 12.5 N each)."""

    name = "grasp"
    description = (
        "Cartesian arm with a two-finger gripper lifts an object to a hidden height; the object's shape, size, "
        "mass, friction and pose vary."
    )
    asset = "grasp.xml"
    params = (
        Param("shape", "the object's shape (upright; box is a cube)", choices=SHAPES),
        Param("size", "the object's half-width across the fingers (radius for round shapes)", 0.02, 0.035, unit="m"),
        Param("mass", "the object's mass", 0.05, 1.2, unit="kg"),
        Param("friction", "sliding friction of the object's surface (it rules contacts with the pads)", 0.25, 1.0),
        Param("obj_x", "initial x of the object on the table (the hand starts above 0, 0)", -0.15, 0.15, unit="m"),
        Param("obj_y", "initial y of the object on the table", -0.15, 0.15, unit="m"),
        Param("obj_yaw", "initial rotation of the object about the vertical", -30.0, 30.0, unit="deg"),
        Param("target_height", "height above the table to lift the object's centre to", 0.1, 0.35, unit="m"),
    )
    train = (_TRAIN,)
    ood = (
        region(_TRAIN, shape=("capsule", "ellipsoid")),  # shapes never seen in training
        region(_TRAIN, mass=(0.7, 1.2)),  # heavier than any training object
        region(_TRAIN, friction=(0.25, 0.45)),  # more slippery than any training object
        region(_TRAIN, target_height=(0.28, 0.35)),  # higher than any training target
    )
    varying_fields = frozenset(
        {
            "body_mass",
            "body_inertia",
            "body_subtreemass",
            "body_invweight0",
            "cam_poscom0",
            "light_poscom0",
            "dof_invweight0",
            "geom_size",
            "geom_rgba",
            "geom_friction",
            "geom_aabb",
            "geom_rbound",
            "site_pos",
        }
    )
    episode_length = 125
    frame_skip = 20
    action_dim = 4
    obs_dim = 16
    success_doc = (
        f"the object's centre is within {SUCCESS_TOL} m of the target height above the table when the episode "
        "ends (held there, not swept through it)"
    )
    reward_doc = (
        "reach: minus the distance from the grip point to the object's centre (m); "
        "grasp: +0.5 × the pads' squeeze (a fraction of the grip's force cap) while the object's centre lies "
        "between them; "
        f"lift, while the object is {_LIFTED} m or more above its resting height and squeezed between the pads "
        "with at least half the grip's force: "
        "2·max(0, 1 − |object height − target height| / target height); "
        f"target: +2 while the object's centre is within {SUCCESS_TOL} m of the target height; "
        "control: −0.01·|a|²"
    )
    scripted_success = 0.9

    def __init__(self) -> None:
        super().__init__()
        m = self.model0
        self._hand = m.body("hand").id
        self._obj = m.body("obj").id
        self._grip = m.site("grip").id
        self._hand_q = m.jnt_qposadr[m.joint("hand_x").id]
        self._hand_v = m.jnt_dofadr[m.joint("hand_x").id]
        self._finger_l = m.jnt_qposadr[m.joint("finger_l").id]
        self._finger_r = m.jnt_qposadr[m.joint("finger_r").id]
        self._finger_l_v = m.jnt_dofadr[m.joint("finger_l").id]
        self._grip_act = m.actuator("grip").id
        self._obj_q = m.jnt_qposadr[m.joint("obj").id]
        self._obj_v = m.jnt_dofadr[m.joint("obj").id]

    # ---- model -----------------------------------------------------------------------------------
    def spec(self, task: Task) -> mujoco.MjSpec:
        s = self.base_spec()
        size, mass = task["size"], task["mass"]
        for shape in SHAPES:
            g = s.geom(f"obj_{shape}")
            g.friction[0] = task["friction"]
            if shape == task["shape"]:
                ex, ey, ez = (size * e for e in _EXTENT[shape])
                g.size = {
                    "box": [ex, ey, ez],
                    "cylinder": [ex, ez, 0.0],
                    "sphere": [ex, 0.0, 0.0],
                    "capsule": [ex, ez - ex, 0.0],
                    "ellipsoid": [ex, ey, ez],
                }[shape]
                g.rgba = _COLOUR[shape]
            else:
                g.size = [_SPECK, _SPECK, _SPECK]
                g.rgba = [*_COLOUR[shape][:3], 0.0]
        body = s.body("obj")
        body.mass = mass
        body.inertia = self._inertia(task["shape"], size, mass)
        s.site("target").pos = [task["obj_x"], task["obj_y"], task["target_height"]]
        grip = s.actuator("grip")
        grip.gainprm[0], grip.biasprm[1] = _GRIP_KP, -_GRIP_KP
        for axis in "xyz":
            s.actuator(f"hand_{axis}").ctrlrange = [-_HAND_SPEED, _HAND_SPEED]
        return s

    @staticmethod
    def _inertia(shape: str, size: float, mass: float) -> list[float]:
        """Principal moments of the solid shape; the capsule counts as a cylinder of its full height."""
        ex, ey, ez = (size * e for e in _EXTENT[shape])
        if shape == "box":
            return [mass * (ey**2 + ez**2) / 3, mass * (ex**2 + ez**2) / 3, mass * (ex**2 + ey**2) / 3]
        if shape in ("cylinder", "capsule"):
            side = mass * (3 * ex**2 + 4 * ez**2) / 12
            return [side, side, mass * ex**2 / 2]
        # sphere and ellipsoid
        return [mass * (ey**2 + ez**2) / 5, mass * (ex**2 + ez**2) / 5, mass * (ex**2 + ey**2) / 5]

    # ---- task geometry ---------------------------------------------------------------------------
    @staticmethod
    def _half_height(task: TaskTensors) -> torch.Tensor:
        """Height of the object's centre when it rests upright on the table ``[B]``."""
        size = task["size"]
        table = torch.tensor(_HALF_HEIGHT, dtype=size.dtype, device=size.device)
        return table[task["shape"].long()] * size

    @staticmethod
    def _grasp_offset(half_height: torch.Tensor) -> torch.Tensor:
        """Height of the hand origin above the object's centre for a grasp ``[B]``: as low as the palm and
        the table allow, so the pads close across the object's middle."""
        return torch.maximum((half_height - _PALM_CLEARANCE).clamp(min=0), _FINGER_FLOOR - half_height)

    # ---- hooks -----------------------------------------------------------------------------------
    def reset(self, task: TaskTensors, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Hand within 2 cm of its home 0.4 m above the table centre, gripper open, the object upright at rest
        at the task's pose: ``qpos [B, nq]``, ``qvel [B, nv]``."""
        like = task["size"]
        b = like.shape[0]
        qpos = torch.as_tensor(self.model0.qpos0, dtype=like.dtype, device=like.device).repeat(b, 1)
        h = self._hand_q
        qpos[:, h : h + 3] = torch.as_tensor(rng.uniform(-0.02, 0.02, (b, 3)), dtype=like.dtype, device=like.device)
        qpos[:, self._finger_l] = _MAX_FINGER
        qpos[:, self._finger_r] = _MAX_FINGER
        o = self._obj_q
        yaw = task["obj_yaw"] * (math.pi / 180)
        qpos[:, o] = task["obj_x"]
        qpos[:, o + 1] = task["obj_y"]
        qpos[:, o + 2] = self._half_height(task)
        qpos[:, o + 3] = torch.cos(yaw / 2)
        qpos[:, o + 4 : o + 6] = 0.0
        qpos[:, o + 6] = torch.sin(yaw / 2)
        return {"qpos": qpos, "qvel": torch.zeros(b, self.model0.nv, dtype=like.dtype, device=like.device)}

    def _pad_gap(self, state: SimState) -> torch.Tensor:
        """Distance between the pads' inner faces ``[B]``."""
        return _PAD_GAP0 + state.qpos[:, self._finger_l] + state.qpos[:, self._finger_r]

    def observe(self, state: SimState) -> torch.Tensor:
        """``[B, 16]``: grip point (3), hand velocity (3), pad gap (1), object position (3), object linear
        velocity (3), object minus grip point (3)."""
        grip = state.site_xpos[:, self._grip]
        obj = state.xpos[:, self._obj]
        return torch.cat(
            [
                grip,
                state.qvel[:, self._hand_v : self._hand_v + 3],
                self._pad_gap(state)[:, None],
                obj,
                state.qvel[:, self._obj_v : self._obj_v + 3],
                obj - grip,
            ],
            dim=1,
        )

    def _between_pads(self, state: SimState) -> torch.Tensor:
        """Bool ``[B]``: the object's centre lies in the box swept by the pads (they reach 0.04 m above and
        below the hand origin, which is 0.01 m above the grip point)."""
        rel = state.xpos[:, self._obj] - state.site_xpos[:, self._grip]
        return (rel[:, 0].abs() < 0.015) & (rel[:, 1].abs() < 0.02) & (rel[:, 2] > -0.03) & (rel[:, 2] < 0.045)

    def _at_target(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return (state.xpos[:, self._obj, 2] - task["target_height"]).abs() < SUCCESS_TOL

    def success(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return self.episode_over(state) & self._at_target(state, task)

    def _squeeze(self, state: SimState) -> torch.Tensor:
        """How hard the pads press ``[B]``, as a fraction of the grip servo's force cap: the fingers held open
        past the servo's target by something between them."""
        blocked = state.qpos[:, self._finger_l] - state.ctrl[:, self._grip_act]
        return (blocked * _GRIP_KP / _GRIP_FORCE).clamp(0, 1)

    def reward_terms(self, state: SimState, action: torch.Tensor, task: TaskTensors) -> dict[str, torch.Tensor]:
        dtype = state.qpos.dtype
        obj = state.xpos[:, self._obj]
        target = task["target_height"]
        # Lift pays only while the object is off the table and squeezed between the pads: a resting object, or one
        # nudged up without being held, earns nothing, so hovering with a loose grip around it is not a local optimum.
        between, squeeze = self._between_pads(state), self._squeeze(state)
        lifted = (obj[:, 2] > self._half_height(task) + _LIFTED) & between & (squeeze > 0.5)
        return {
            "reach": -(obj - state.site_xpos[:, self._grip]).norm(dim=1),
            "grasp": 0.5 * between.to(dtype) * squeeze,
            "lift": 2 * lifted.to(dtype) * (1 - (obj[:, 2] - target).abs() / target).clamp(min=0),
            "target": 2 * self._at_target(state, task).to(dtype),
            "control": -0.01 * action.clamp(-1, 1).square().sum(dim=1).to(dtype),
        }

    def scripted_action(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Move above the object, descend with the gripper open, close, and once the fingers have stopped
        on the object lift it to the target height. Stateless: the phase follows from where the object sits
        relative to the hand, so a slipped object is grasped again."""
        hand = state.xpos[:, self._hand]
        obj = state.xpos[:, self._obj]
        half_height = self._half_height(task)
        offset = self._grasp_offset(half_height)
        to_obj = obj[:, :2] - hand[:, :2]
        above_grasp = hand[:, 2] - obj[:, 2] - offset
        finger = state.qpos[:, self._finger_l]
        closing = finger < _MAX_FINGER - 0.003
        stopped = closing & (state.qvel[:, self._finger_l_v].abs() < 0.02)
        # Closing starts only from the grasp pose; once the fingers are in, keeping hold only needs the
        # object to stay between the pads (it may sag in the grip without the gripper letting go).
        aligned = to_obj.norm(dim=1) < 0.012
        grasping = torch.where(closing, self._between_pads(state), aligned & (above_grasp.abs() < 0.01))
        lift = grasping & stopped
        # Hover with the pad tips 2 cm above the object's top while not aligned, so moving across never
        # knocks it; descend once aligned; lift only after the fingers have stopped on the object, steering
        # the object's (not the hand's) height onto the target.
        z_goal = torch.where(aligned, obj[:, 2] + offset, obj[:, 2] + half_height + 0.06)
        z_goal = torch.where(lift, hand[:, 2] + task["target_height"] - obj[:, 2], z_goal)
        # Velocity commands: action 1 is 0.25 m/s, so a gain of 10 closes an error with a 0.4 s time constant.
        vxy = (10 * to_obj).clamp(-1, 1)
        vz = (10 * (z_goal - hand[:, 2])).clamp(-1, 1)
        # A velocity servo this stiff would jerk the object at the lift's start and shake it out of a weak
        # grip: raise the lift speed by at most 0.05 m/s per control step (1.25 m/s²) up to 0.25 m/s.
        now = state.qvel[:, self._hand_v + 2] / _HAND_SPEED
        vz = torch.where(lift, torch.minimum(vz, now + 0.2), vz)
        grip = torch.where(grasping, -torch.ones_like(vz), torch.ones_like(vz))
        return torch.cat([vxy, vz[:, None], grip[:, None]], dim=1)
