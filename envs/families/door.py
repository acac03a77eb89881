"""``door``: the Cartesian gripper opens a hinged door by its lever handle and leaves it at a wanted opening.

What differs between doors is hidden from the policy: which side the hinge is on (so where the handle
is), whether the door opens by pushing or pulling, how high the handle is, how heavy, damped and sprung
the door is, whether a latch holds it shut until the lever is pressed down, and how far it should be opened
(``target_angle``). The policy sees only its hand, its fingers and the two joint encoders (door and lever
angle), so it must find the handle and the way the door moves by trying: the behaviour, not only the
numbers, differs between tasks.

The wanted opening is what makes the family need adaptation. Everything else a closed-loop policy can find out
within one episode (the encoders tell it when it has the handle and which way the door gives), and multitask
PPO opened 97 % of test doors when opening was the whole task. The wanted opening reaches the policy only
through reward, like the target velocity of HalfCheetahVel, so it is learned from the support episodes.

Geometry (world frame, metres): the closed door fills the opening ``x ∈ [-0.225, 0.225]`` at
``y = 0.2``; the robot stands on the ``-y`` side. A ``left`` hinge is at ``x = -0.225`` (left as seen
from the robot and from the ``task`` camera), a ``right`` hinge at ``+0.225``. A ``pull`` door swings
towards the robot (``-y``), a ``push`` door away from it. The lever stands 9 cm off the door on a post
near the free edge and points towards the hinge; pressing its free end down turns it.

Latch: a joint equality constraint (``latch``) pins the hinge at 0. :meth:`Door.control` activates it per
world through ``eq_active`` while the task has a latch, the lever is turned less than ``LEVER_UNLATCH``
and the door is closed (opened less than ``CLOSED``). It is a function of the state alone, so it needs no
memory: the door stays free once it has opened and relatches when it is shut with the lever up. A
physical bolt would need a contact that the lever retracts, which is harder to keep robust under the
gripper's pushes than one constraint.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import torch

from envs.family import Family, Param, SimState, Task, TaskTensors, region

WIDTH = 0.45
"""Door panel width (m)."""
THICKNESS = 0.03
"""Door panel thickness (m)."""
DOOR_Y = 0.2
"""``y`` of the closed panel's centre plane (m)."""
PIVOT_INSET = 0.06
"""Lever pivot's distance from the free edge (m)."""
STANDOFF = 0.09
"""Lever axis's distance in front of the panel (m): the palm must clear the panel while the fingers hold the lever."""
HAND_START = (0.0, -0.1, 0.7)
"""World position of the hand's frame at zero joint positions (m)."""

TOLERANCE = 0.1
"""Largest distance (rad, ≈6°) of the door's final opening from ``target_angle`` that counts as solved."""
OPEN_SCALE = 1.5
"""Distance from the wanted opening (rad) at which the ``open`` reward term reaches 0: the hinge's whole range."""
HOLD_SCALE = 0.2
"""Distance from the wanted opening (rad) within which the ``hold`` reward term pays: its sharp peak is what
tells tasks apart (under ``open`` alone, stopping 0.1 rad off cost about 5 % of an episode's return, less than the
spread between episodes, and meta-training's adaptation gain stalled at about +10 points of success)."""
LEVER_UNLATCH = 0.5
"""Lever angle (rad) beyond which a latch lets go."""
CLOSED = 0.05
"""Door opening (rad) below which the door counts as shut, so a latch can hold it."""

_SIDES = ("left", "right")
_DIRECTIONS = ("pull", "push")
_LATCHES = ("none", "lever")

_BASE = {
    "handle_height": (0.4, 0.65),
    "door_mass": (2.0, 10.0),
    "damping": (0.5, 4.0),
    "spring": (0.0, 4.0),
    "latch": _LATCHES,
    "target_angle": (0.2, 0.8),
}
# The train split never shows a left-hinged pull door: the union below covers the other three combinations.
_TRAIN_RIGHT = {"hinge_side": ("right",), "direction": _DIRECTIONS, **_BASE}
_TRAIN_LEFT_PUSH = {"hinge_side": ("left",), "direction": ("push",), **_BASE}


def _side_sign(side: float | torch.Tensor) -> float | torch.Tensor:
    """+1 for a right hinge (at ``+x``), -1 for a left one, from the category index (``_SIDES`` order)."""
    return 2.0 * side - 1.0


def _swing_sign(side: float | torch.Tensor, direction: float | torch.Tensor) -> float | torch.Tensor:
    """Sign of the hinge axis along ``+z`` that makes a positive angle open the door (pull: index 0)."""
    return _side_sign(side) * (1.0 - 2.0 * direction)


class Door(Family):
    name = "door"
    description = (
        "Cartesian gripper opens a hinged door by its lever handle; hinge side, push/pull, handle height, "
        "door mass, hinge damping and spring, and a latch released by pressing the lever down vary."
    )
    asset = "door.xml"
    params = (
        Param("hinge_side", "side of the hinge seen from the robot (left: -x, right: +x)", choices=_SIDES),
        Param("direction", "pull: the door swings towards the robot; push: away from it", choices=_DIRECTIONS),
        Param("handle_height", "height of the lever's pivot above the floor", 0.4, 0.65, unit="m"),
        Param("door_mass", "mass of the door panel", 2.0, 10.0, unit="kg"),
        Param("damping", "viscous damping of the hinge", 0.5, 8.0, unit="N·m·s/rad"),
        Param("spring", "stiffness of the hinge's closing spring (rest: closed)", 0.0, 4.0, unit="N·m/rad"),
        Param("latch", "none, or a latch that holds the door shut until the lever is pressed down", choices=_LATCHES),
        Param("target_angle", "opening the door should be left at when the episode ends", 0.2, 0.9, unit="rad"),
    )
    train = (_TRAIN_RIGHT, _TRAIN_LEFT_PUSH)
    ood = (
        # the held-out combination: a left hinge on a pull door
        {**_BASE, "hinge_side": ("left",), "direction": ("pull",)},
        # any seen combination, but a hinge stiffer to move than any training door
        region(_TRAIN_RIGHT, damping=(5.0, 8.0)),
        region(_TRAIN_LEFT_PUSH, damping=(5.0, 8.0)),
    )
    varying_fields = frozenset(
        {
            "body_pos",
            "body_quat",
            "body_mass",
            "body_inertia",
            "body_subtreemass",
            "body_invweight0",
            "dof_invweight0",
            "dof_damping",
            "jnt_axis",
            "jnt_stiffness",
            "geom_rgba",
            "cam_poscom0",
            "light_poscom0",
        }
    )
    episode_length = 150
    frame_skip = 20
    action_dim = 4
    obs_dim = 10
    success_doc = (
        f"when the episode ends (6 s), the door's opening is within {TOLERANCE} rad (≈{math.degrees(TOLERANCE):.0f}°) "
        "of target_angle"
    )
    reward_doc = (
        "reach: -distance (m) from the grip site to the lever's grasp point; "
        "grasp: +0.5 while the closed fingers hold the lever (grip site within 3 cm, fingers between 4 and 35 mm); "
        f"lever: on latched doors, lever angle / {LEVER_UNLATCH} rad capped at 1 (1 once the latch is free); "
        f"open: 5 · (1 - |door opening - target_angle| / {OPEN_SCALE} rad); "
        f"hold: 5 · max(0, 1 - |door opening - target_angle| / {HOLD_SCALE} rad); "
        "control: -0.01·|a|²"
    )
    scripted_success = 0.9

    def __init__(self) -> None:
        super().__init__()
        m = self.model0
        self._door_q = int(m.joint("door_hinge").qposadr[0])
        self._door_v = int(m.joint("door_hinge").dofadr[0])
        self._lever_q = int(m.joint("lever").qposadr[0])
        self._finger_q = int(m.joint("finger_l").qposadr[0])
        self._rest_q = [int(m.joint(j).qposadr[0]) for j in ("finger_l", "finger_r", "door_hinge", "lever")]
        self._hand_v = [int(m.joint(f"hand_{a}").dofadr[0]) for a in "xyz"]
        self._grip = int(m.site("grip").id)
        self._handle = int(m.site("handle").id)
        self._door_body = int(m.body("door").id)
        self._latch_eq = int(m.equality("latch").id)
        self._eq_active0 = torch.as_tensor(m.eq_active0.astype(bool))

    # ---- model -------------------------------------------------------------------------------------
    def spec(self, task: Task) -> mujoco.MjSpec:
        side = _side_sign(_SIDES.index(task["hinge_side"]))
        pull = task["direction"] == "pull"
        # The hinge axis lies on the face the door opens towards, so a door never swings through its frame.
        panel_y = THICKNESS / 2 if pull else -THICKNESS / 2
        s = self.base_spec()
        s.body("hand").pos = HAND_START
        door = s.body("door")
        door.pos = [side * WIDTH / 2, DOOR_Y - panel_y, 0.0]
        hinge = s.joint("door_hinge")
        hinge.axis = [0.0, 0.0, _swing_sign(_SIDES.index(task["hinge_side"]), _DIRECTIONS.index(task["direction"]))]
        hinge.damping = [task["damping"], 0.0, 0.0]
        hinge.stiffness = [task["spring"], 0.0, 0.0]
        s.body("panel").pos = [-side * WIDTH / 2, panel_y, s.body("panel").pos[2]]
        s.geom("panel").mass = task["door_mass"]
        face_y = panel_y - THICKNESS / 2
        h = task["handle_height"]
        lever = s.body("lever")
        lever.pos = [-side * (WIDTH - PIVOT_INSET), face_y - STANDOFF, h]
        # Half a turn about the door's normal points the lever at a left hinge; it turns the joint's
        # axis too, so that axis is flipped back to keep a positive lever angle meaning "pressed down".
        lever.quat = [1.0, 0.0, 0.0, 0.0] if side > 0 else [0.0, 0.0, 1.0, 0.0]
        s.joint("lever").axis = [0.0, side, 0.0]
        s.body("lock").pos = [-side * (WIDTH - PIVOT_INSET), face_y - 0.003, h - 0.06]
        s.geom("lock").rgba[3] = 1.0 if task["latch"] == "lever" else 0.0
        return s

    # ---- batched hooks -----------------------------------------------------------------------------
    def _opening(self, state: SimState) -> torch.Tensor:
        """Door opening angle ``[B]`` (rad, 0 = shut; the hinge axis is flipped per task so that it is ≥ 0)."""
        return state.qpos[:, self._door_q]

    def _latched(self, qpos: torch.Tensor, task: TaskTensors) -> torch.Tensor:
        """Bool ``[B]``: the latch constraint holds the door at joint positions ``qpos [B, nq]``."""
        has_latch = task["latch"] == _LATCHES.index("lever")
        return has_latch & (qpos[:, self._lever_q] < LEVER_UNLATCH) & (qpos[:, self._door_q] < CLOSED)

    def _eq_active(self, qpos: torch.Tensor, task: TaskTensors) -> torch.Tensor:
        """``eq_active`` ``[B, neq]`` (bool): the gripper's constraints as compiled, the latch per world."""
        latched = self._latched(qpos, task)
        eq = self._eq_active0.to(latched.device).expand(latched.shape[0], -1).clone()
        eq[:, self._latch_eq] = latched
        return eq

    def reset(self, task: TaskTensors, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Door shut, lever up, fingers closed, the hand within ±1 cm of its start on each axis; the latch
        engaged where the task has one."""
        out = super().reset(task, rng)
        qpos = out["qpos"]
        qpos[:, self._rest_q] = 0.0
        out["eq_active"] = self._eq_active(qpos, task)
        return out

    def control(self, action: torch.Tensor, state: SimState, task: TaskTensors) -> dict[str, torch.Tensor]:
        """``ctrl`` as in :class:`Family` plus ``eq_active`` ``[B, neq]`` switching each world's latch."""
        return {**super().control(action, state, task), "eq_active": self._eq_active(state.qpos, task)}

    def observe(self, state: SimState) -> torch.Tensor:
        """``[B, 10]``: grip site position (3), hand velocity (3), finger opening (1), door opening angle (1),
        door angular velocity (1), lever angle (1)."""
        return torch.cat(
            [
                state.site_xpos[:, self._grip],
                state.qvel[:, self._hand_v],
                state.qpos[:, [self._finger_q, self._door_q]],
                state.qvel[:, [self._door_v]],
                state.qpos[:, [self._lever_q]],
            ],
            dim=1,
        )

    def _to_handle(self, state: SimState) -> torch.Tensor:
        """Vector from the grip site to the lever's grasp point ``[B, 3]``."""
        return state.site_xpos[:, self._handle] - state.site_xpos[:, self._grip]

    def _holding(self, state: SimState, to_handle: torch.Tensor) -> torch.Tensor:
        """Bool ``[B]``: the fingers are closed on the lever (not on nothing, not wide open)."""
        finger = state.qpos[:, self._finger_q]
        return (to_handle.norm(dim=1) < 0.03) & (finger > 0.004) & (finger < 0.035)

    def reward_terms(self, state: SimState, action: torch.Tensor, task: TaskTensors) -> dict[str, torch.Tensor]:
        to_handle = self._to_handle(state)
        dtype = state.qpos.dtype
        opening = self._opening(state)
        has_latch = task["latch"] == _LATCHES.index("lever")
        free = ~self._latched(state.qpos, task)
        lever = torch.where(free, 1.0, state.qpos[:, self._lever_q].clamp(0, LEVER_UNLATCH) / LEVER_UNLATCH)
        miss = (opening - task["target_angle"]).abs()
        return {
            "reach": -to_handle.norm(dim=1),
            "grasp": 0.5 * self._holding(state, to_handle).to(dtype),
            "lever": has_latch.to(dtype) * lever,
            "open": 5.0 * (1.0 - miss / OPEN_SCALE),
            "hold": 5.0 * (1.0 - miss / HOLD_SCALE).clamp(min=0),
            "control": -0.01 * action.clamp(-1, 1).square().sum(dim=1).to(dtype),
        }

    def success(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        return self.episode_over(state) & ((self._opening(state) - task["target_angle"]).abs() < TOLERANCE)

    def scripted_action(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Go above the grasp point with open fingers, descend, close; press the lever down while a latch
        holds; then move the hand along the handle's arc towards ``target_angle`` and hold the door there.
        ``[B, 4]``."""
        to_handle = self._to_handle(state)
        dtype = to_handle.dtype
        dist = to_handle.norm(dim=1)
        holding = self._holding(state, to_handle)
        finger = state.qpos[:, self._finger_q]
        up = torch.tensor([0.0, 0.0, 0.07], dtype=dtype, device=to_handle.device)
        over = to_handle[:, :2].norm(dim=1) < 0.012
        # approach: above the handle until aligned, then down onto it with the fingers open
        velocity = torch.where(over[:, None], to_handle, to_handle + up) * 12.0
        # close at the handle, and keep closing while the fingers are on their way (hysteresis)
        close = (dist < 0.015) | ((dist < 0.03) & (finger > 0.004) & (finger < 0.04))
        grip = torch.where(close, -1.0, 1.0).to(dtype)

        # holding: press the lever while latched, else follow the handle's arc around the hinge
        hinge = state.xpos[:, self._door_body]
        r = state.site_xpos[:, self._handle, :2] - hinge[:, :2]
        swing = _swing_sign(task["hinge_side"], task["direction"])
        tangent = swing[:, None] * torch.stack([-r[:, 1], r[:, 0]], dim=1)
        tangent = tangent / tangent.norm(dim=1, keepdim=True).clamp_min(1e-6)
        # Slower on a stiffer hinge: the bar pushes the fingers apart against the grip servo's capped force.
        # Slow down within 0.05 rad of the wanted opening and back off past it.
        towards = ((task["target_angle"] - self._opening(state)) / 0.05).clamp(-1, 1)
        speed = (2.4 / task["damping"]).clamp(0.25, 0.6) * towards
        arc = torch.cat([speed[:, None] * tangent, torch.zeros_like(speed)[:, None]], dim=1) + 8.0 * to_handle
        # Press past the unlatch angle with a margin, and never lift the hand while a latched door is still
        # shut: the lever's spring would bring it back up and the latch would catch again.
        shut = (task["latch"] == _LATCHES.index("lever")) & (self._opening(state) < CLOSED)
        arc[:, 2] = torch.where(shut, arc[:, 2].clamp(max=0.0), arc[:, 2])
        press = torch.cat([8.0 * to_handle[:, :2], torch.full_like(speed, -0.3)[:, None]], dim=1)
        pressing = shut & (state.qpos[:, self._lever_q] < LEVER_UNLATCH + 0.15)
        velocity = torch.where(holding[:, None], torch.where(pressing[:, None], press, arc), velocity)
        return torch.cat([velocity.clamp(-1, 1), grip[:, None]], dim=1)
