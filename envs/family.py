"""Task families: one MuJoCo model structure plus a parameter space with train and ood regions.

A family owns everything that defines its tasks: the model it builds from ``assets/`` with
``mujoco.MjSpec``, its named parameters and the region each split draws from (``train``, ``val`` and ``test``
from the train regions, ``ood`` from the held-out ones), and the batched
functions that turn simulator state into observation, reward terms and success. Those functions take
torch tensors with a leading world axis ``B`` so that the single-task gymnasium env (``B = 1``) and the
batched vector env share one implementation.

The policy never sees a task's parameters: :meth:`Family.observe` receives only the simulator state (only the
oracle baseline, :mod:`envs.oracle`, adds them to its :meth:`Family.policy_observation`). Parameters reach
reward, success, reset and scripted controllers through ``task``, a dict of per-world tensors.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import mujoco
import numpy as np
import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SPLITS = ("train", "val", "test", "ood")
HELD_OUT = ("val", "test", "ood")
"""The splits evaluation may draw from: tune on ``val``, report ``test`` and ``ood``."""

# Each split's random stream for an integer seed: ``default_rng([seed, _STREAM[split]])``. The numbers are fixed
# here, not taken from the position in ``SPLITS``: train, test and ood had 0, 1 and 2 before ``val`` existed, and
# saved runs and results name their tasks by (seed, split), so those draws must stay what they were.
_STREAM = {"train": 0, "test": 1, "ood": 2, "val": 3}

# MjModel fields MuJoCo Warp 4.0 can hold per world (``Model`` fields whose array spec starts with ``*``, so
# ``put_model(..., batch_sizes=...)`` accepts them; read from ``mujoco_warp._src.types``), and the batchable
# ``opt`` fields. A family may vary only these between tasks, so all tasks of a family run in one batched
# simulator on either engine. tests/envs/test_families.py checks the list against an installed mujoco_warp.
WARP_BATCHABLE = frozenset(
    """
    actuator_acc0 actuator_actrange actuator_armature actuator_biasprm actuator_cranklength
    actuator_ctrlrange actuator_damping actuator_dampingpoly actuator_delay actuator_dynprm
    actuator_forcerange actuator_gainprm actuator_gear actuator_history actuator_historyadr
    actuator_lengthrange body_gravcomp body_inertia body_invweight0 body_ipos body_iquat body_mass
    body_pos body_quat body_subtreemass cam_fovy cam_intrinsic cam_mat0 cam_pos cam_pos0 cam_poscom0
    cam_quat dof_armature dof_damping dof_dampingpoly dof_frictionloss dof_invweight0 dof_solimp
    dof_solref eq_data eq_solimp eq_solref geom_aabb geom_adhesion geom_dataid geom_friction geom_gap
    geom_margin geom_matid geom_pos geom_quat geom_rbound geom_rgba geom_size geom_solimp geom_solmix
    geom_solref geom_surfacevel jnt_actfrcrange jnt_axis jnt_margin jnt_pos jnt_range jnt_solimp
    jnt_solref jnt_springyield jnt_stiffness jnt_stiffnesspoly light_active light_ambient
    light_attenuation light_castshadow light_cutoff light_diffuse light_dir light_dir0 light_exponent
    light_pos light_pos0 light_poscom0 light_specular light_type mat_emission mat_rgba mat_shininess
    mat_specular mat_texid mat_texrepeat mat_texuniform pair_adhesion pair_friction pair_gap pair_margin
    pair_solimp pair_solref pair_solreffriction qpos0 qpos_spring sensor_delay sensor_history
    sensor_historyadr sensor_interval site_pos site_quat tendon_actfrcrange tendon_armature
    tendon_damping tendon_dampingpoly tendon_frictionloss tendon_invweight0 tendon_length0
    tendon_lengthspring tendon_margin tendon_range tendon_solimp_fri tendon_solimp_lim tendon_solref_fri
    tendon_solref_lim tendon_springyield tendon_stiffness tendon_stiffnesspoly opt.timestep
    opt.tolerance opt.ls_tolerance opt.noslip_tolerance opt.ccd_tolerance opt.sleep_tolerance
    opt.gravity opt.wind opt.magnetic opt.density opt.viscosity opt.impratio_invsqrt
    """.split()
)

# Constants MuJoCo derives from masses and sizes that MuJoCo Warp never reads per world: `dof_M0` and `bvh_aabb`
# are not Warp fields (Warp culls collisions with the batchable `geom_aabb`/`geom_rbound`), and Warp reads
# `dof_length` only for sleeping, which robometa never enables. They may differ between tasks without being
# batched; the CPU engine takes them from each task's own compiled model.
UNBATCHED_DERIVED = frozenset({"bvh_aabb", "dof_M0", "dof_length"})

Value = float | int | str
Task = dict[str, Value]
Domain = tuple[float, float] | tuple[str, ...]
Region = Mapping[str, Domain]
TaskTensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Param:
    """One named task parameter: a numeric range ``[low, high]`` or a set of categories ``choices``."""

    name: str
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""
    integer: bool = False

    def __post_init__(self) -> None:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise TypeError(f"param {self.name}: give either low/high or choices")

    @property
    def categorical(self) -> bool:
        return self.choices is not None

    def allowed(self) -> str:
        if self.categorical:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in [{self.low:g}, {self.high:g}]{' ' + self.unit if self.unit else ''}"

    def check(self, value: Any, where: str = "task") -> Value:
        """Return ``value`` in canonical form or raise ``ValueError`` naming the field and what is allowed."""
        bad = ValueError(f"{where}.{self.name}={value!r} is not allowed: expected {self.allowed()}")
        if self.categorical:
            if not isinstance(value, str) or value not in self.choices:
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad
        if self.integer and float(value) != int(value):
            raise bad
        if not self.low <= value <= self.high:
            raise bad
        return int(value) if self.integer else float(value)

    def encode(self, value: Value) -> float:
        """Numeric encoding used in task tensors: the category index, or the number itself."""
        return float(self.choices.index(value)) if self.categorical else float(value)


def region(base: Region, **overrides: Domain) -> dict[str, Domain]:
    """A copy of ``base`` with some parameters' domains replaced (builds ood regions from train)."""
    unknown = set(overrides) - set(base)
    if unknown:
        raise TypeError(f"region overrides unknown params {sorted(unknown)}")
    return {**base, **overrides}


def format_domain(d: Domain) -> str:
    """``{a, b}`` for categories, ``[low, high]`` for a range."""
    return "{" + ", ".join(d) + "}" if isinstance(d[0], str) else f"[{d[0]:g}, {d[1]:g}]"


def _in_domain(value: Value, domain: Domain) -> bool:
    if isinstance(value, str):
        return value in domain
    lo, hi = domain
    return lo <= value <= hi


def _domains_disjoint(a: Domain, b: Domain) -> bool:
    if isinstance(a[0], str):
        return not set(a) & set(b)
    return a[1] < b[0] or b[1] < a[0]


@dataclass(frozen=True)
class TaskBatch:
    """``n`` tasks of one family, JSON-serializable. ``tasks[i]`` maps every parameter name to its value.

    :meth:`to_json` writes one; :func:`envs.registry.parse_task_batch` reads it back (it needs the family to
    validate the tasks, and the registry is what knows the families)."""

    family: str
    split: str
    tasks: tuple[Task, ...]
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "split": self.split,
            "seed": self.seed,
            "tasks": [dict(t) for t in self.tasks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


@dataclass
class SimState:
    """Simulator state of ``B`` worlds as torch tensors (views of the engine's arrays where possible).

    qpos ``[B, nq]``, qvel ``[B, nv]``, xpos ``[B, nbody, 3]``, xquat ``[B, nbody, 4]``,
    site_xpos ``[B, nsite, 3]``, sensordata ``[B, nsensordata]``, ctrl ``[B, nu]``, time ``[B]``.
    """

    qpos: torch.Tensor
    qvel: torch.Tensor
    xpos: torch.Tensor
    xquat: torch.Tensor
    site_xpos: torch.Tensor
    sensordata: torch.Tensor
    ctrl: torch.Tensor
    time: torch.Tensor

    FIELDS: ClassVar[tuple[str, ...]] = ("qpos", "qvel", "xpos", "xquat", "site_xpos", "sensordata", "ctrl")

    @staticmethod
    def from_mjdata(data: mujoco.MjData) -> SimState:
        """Zero-copy ``B = 1`` view of one ``MjData``."""
        arrays = {f: torch.from_numpy(getattr(data, f)).unsqueeze(0) for f in SimState.FIELDS}
        return SimState(**arrays, time=torch.tensor([data.time], dtype=torch.float64))


class Family:
    """Base class of a task family. Subclasses set the class attributes and implement the hooks.

    Splits: ``train`` draws from the :attr:`train` regions and ``ood`` from the :attr:`ood` regions. ``val`` and
    ``test`` draw from the train regions too, as unseen tasks of the training distribution: tune on ``val``, report
    ``test``. ``val`` draws come from the test region on their own stream, so they never coincide with a test draw.

    Batched hooks take ``task``: a dict of per-world tensors ``[B]`` (categories as their index, see
    :meth:`Param.encode`), built by :meth:`task_tensors`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    asset: ClassVar[str]
    """File in ``assets/`` the spec is built from."""
    params: ClassVar[tuple[Param, ...]]
    train: ClassVar[tuple[Region, ...]]
    """Union of regions the ``train``, ``val`` and ``test`` splits draw from."""
    ood: ClassVar[tuple[Region, ...]]
    """Union of held-out regions, each disjoint from every train region in at least one parameter."""
    varying_fields: ClassVar[frozenset[str]]
    """MjModel fields that may differ between tasks; each must be in ``WARP_BATCHABLE``."""
    episode_length: ClassVar[int]
    """Control steps per episode."""
    frame_skip: ClassVar[int]
    """Physics steps per control step."""
    action_dim: ClassVar[int]
    obs_dim: ClassVar[int]
    max_contacts: ClassVar[int] = 32
    """Contacts per world MuJoCo Warp allocates room for (it drops more and flags an overflow)."""
    max_constraints: ClassVar[int] = 128
    """Constraint rows per world MuJoCo Warp allocates room for."""
    camera: ClassVar[str] = "task"
    """Name of the camera in the model used for rendering."""
    success_doc: ClassVar[str]
    reward_doc: ClassVar[str]
    scripted_success: ClassVar[float | None] = None
    """Documented lower bound on the scripted controller's success rate on ``train`` tasks (None: no script)."""

    def __init__(self) -> None:
        self._by_name = {p.name: p for p in self.params}
        self._check_regions()
        bad = self.varying_fields - WARP_BATCHABLE
        if bad:
            raise TypeError(f"{self.name}: fields {sorted(bad)} cannot vary per world in MuJoCo Warp")
        self.model0 = self.model(self.default_task())
        """Model of the default task: sizes, names and ids shared by every task of the family."""

    # ---- parameter space -------------------------------------------------------------------------
    def _check_regions(self) -> None:
        names = set(self._by_name)
        for split, regions in (("train", self.train), ("ood", self.ood)):
            for r in regions:
                if set(r) != names:
                    raise TypeError(f"{self.name} {split} region must name exactly {sorted(names)}")
                for k, dom in r.items():
                    p = self._by_name[k]
                    for v in dom:
                        p.check(v, where=f"{self.name}.{split}")
        for o in self.ood:
            for t in self.train:
                if not any(_domains_disjoint(o[k], t[k]) for k in names):
                    raise TypeError(f"{self.name}: an ood region overlaps a train region")

    def split_regions(self, split: str) -> tuple[Region, ...]:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not allowed: expected one of {', '.join(SPLITS)}")
        return self.ood if split == "ood" else self.train

    def in_split(self, task: Task, split: str) -> bool:
        """Whether ``task`` lies in the region ``split`` draws from (``val`` and ``test`` share ``train``'s)."""
        return any(all(_in_domain(task[k], r[k]) for k in r) for r in self.split_regions(split))

    def default_task(self) -> Task:
        """The centre of the first train region (midpoints, first category)."""
        r = self.train[0]
        out: Task = {}
        for p in self.params:
            dom = r[p.name]
            out[p.name] = (
                dom[0]
                if p.categorical
                else p.check(round((dom[0] + dom[1]) / 2) if p.integer else (dom[0] + dom[1]) / 2)
            )
        return out

    def sample(self, rng: int | np.random.Generator, n: int, split: str = "train") -> TaskBatch:
        """Draw ``n`` tasks from ``split``'s region: a region of the union uniformly, then each parameter
        uniformly in its domain. An integer seed gives each split its own stream, so ``train``, ``val`` and
        ``test`` draws from one seed differ although they share a region. Tune on ``val``, report ``test``: val
        draws come from the test region on their own stream, so they never coincide with a test draw (of any
        seed). A ``numpy.random.Generator`` is used as it is, and the batch then records no seed."""
        regions = self.split_regions(split)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r} is not allowed: expected a positive integer")
        seed = None
        if not isinstance(rng, np.random.Generator):
            seed = int(rng)
            rng = np.random.default_rng([seed, _STREAM[split]])
        tasks = []
        for _ in range(n):
            r = regions[int(rng.integers(len(regions)))]
            task: Task = {}
            for p in self.params:
                dom = r[p.name]
                if p.categorical:
                    task[p.name] = dom[int(rng.integers(len(dom)))]
                elif p.integer:
                    task[p.name] = int(rng.integers(int(dom[0]), int(dom[1]) + 1))
                else:
                    task[p.name] = float(rng.uniform(dom[0], dom[1]))
            tasks.append(task)
        return TaskBatch(self.name, split, tuple(tasks), seed)

    def validate(self, task: Any, where: str = "task") -> Task:
        """Check a task dict (every parameter present, no others, each in its range or categories)."""
        if not isinstance(task, Mapping):
            raise ValueError(f"{where} must be an object mapping parameter names to values")
        unknown = sorted(set(task) - set(self._by_name))
        if unknown:
            raise ValueError(
                f"{where}.{unknown[0]} is not a parameter of {self.name}: expected {', '.join(self._by_name)}"
            )
        missing = [k for k in self._by_name if k not in task]
        if missing:
            raise ValueError(f"{where}.{missing[0]} is missing: {self.name} tasks need {', '.join(self._by_name)}")
        return {p.name: p.check(task[p.name], where) for p in self.params}

    def task_tensors(
        self,
        tasks: Sequence[Task] | TaskBatch,
        repeat: int = 1,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> TaskTensors:
        """Per-world parameter tensors ``[n_tasks * repeat]``, task-major (world ``w`` is task ``w // repeat``)."""
        tasks = tasks.tasks if isinstance(tasks, TaskBatch) else tasks
        out = {}
        for p in self.params:
            col = torch.tensor([p.encode(t[p.name]) for t in tasks], dtype=dtype, device=device)
            out[p.name] = col.repeat_interleave(repeat)
        return out

    # ---- model -----------------------------------------------------------------------------------
    def base_spec(self) -> mujoco.MjSpec:
        return mujoco.MjSpec.from_file(str(ASSETS / self.asset))

    def spec(self, task: Task) -> mujoco.MjSpec:
        """The MjSpec of one task: ``base_spec()`` with the task's parameters written into it."""
        raise NotImplementedError

    def model(self, task: Task) -> mujoco.MjModel:
        """Compiled model of one task (cached: tasks are small, compiling is not)."""
        key = tuple(self.validate(task).items())
        return _compile(self, key)

    # ---- batched hooks: tensors with a leading world axis B ---------------------------------------
    def reset(self, task: TaskTensors, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Initial state of ``B`` worlds: MjData fields to write, at least ``qpos [B, nq]`` and ``qvel [B, nv]``.

        Default: the model's ``qpos0`` with small uniform noise and zero velocity."""
        like = next(iter(task.values()))  # [B]: gives the batch size, dtype and device
        m, kw = self.model0, {"dtype": like.dtype, "device": like.device}
        noise = rng.uniform(-0.01, 0.01, (like.shape[0], m.nq))
        return {"qpos": torch.as_tensor(m.qpos0 + noise, **kw), "qvel": torch.zeros(like.shape[0], m.nv, **kw)}

    def control(self, action: torch.Tensor, state: SimState, task: TaskTensors) -> dict[str, torch.Tensor]:
        """MjData fields to write before the physics steps, from actions ``[B, action_dim]`` in ``[-1, 1]``.

        Default: ``ctrl`` = the action mapped linearly onto each actuator's ``ctrlrange``."""
        lo, half_span = self._ctrl_affine(state.ctrl.dtype, state.ctrl.device)
        return {"ctrl": lo + (action.clamp(-1, 1).to(state.ctrl.dtype) + 1) * half_span}

    @functools.cache  # noqa: B019 (families live as long as the process: make_family caches them)
    def _ctrl_affine(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``ctrlrange`` low ``[nu]`` and half its width ``[nu]``, built once per dtype and device."""
        r = torch.as_tensor(self.model0.actuator_ctrlrange, dtype=dtype, device=device)
        return r[:, 0], (r[:, 1] - r[:, 0]) / 2

    def observe(self, state: SimState) -> torch.Tensor:
        """Observation ``[B, obs_dim]``: only what the robot could sense, never the task parameters."""
        raise NotImplementedError

    def policy_observation(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """What the policy sees ``[B, obs_dim]``: :meth:`observe`, the robot's senses. The oracle baseline
        (:class:`envs.oracle.OracleFamily`) overrides it to add the task's parameters."""
        return self.observe(state)

    def reward_terms(self, state: SimState, action: torch.Tensor, task: TaskTensors) -> dict[str, torch.Tensor]:
        """Named reward terms, each ``[B]``; the reward is their sum."""
        raise NotImplementedError

    def success(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Bool ``[B]``: the task is solved in this state."""
        raise NotImplementedError

    def episode_over(self, state: SimState) -> torch.Tensor:
        """Bool ``[B]``: ``state`` is an episode's last. Success that a policy could sweep through on the way (a
        running average, a door swinging past its mark) is judged here only: an episode counts as solved if
        success held at any step."""
        step = self.frame_skip * self.model0.opt.timestep
        return state.time >= self.episode_length * step - step / 2

    def failed(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Bool ``[B]``: the episode ends early (robot fell, object lost). Default: never."""
        return torch.zeros(state.qpos.shape[0], dtype=torch.bool, device=state.qpos.device)

    def scripted_action(self, state: SimState, task: TaskTensors) -> torch.Tensor:
        """Reference controller from privileged state: actions ``[B, action_dim]``."""
        raise NotImplementedError(f"{self.name} has no scripted controller")

    # ---- description -------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        def dom(r: Region, p: Param) -> Any:
            return list(r[p.name])

        return {
            "name": self.name,
            "description": self.description,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "episode_length": self.episode_length,
            "control_dt": self.frame_skip * float(self.model0.opt.timestep),
            "params": [
                {
                    "name": p.name,
                    "doc": p.doc,
                    "unit": p.unit,
                    "allowed": p.allowed(),
                    "train": [dom(r, p) for r in self.train],
                    "ood": [dom(r, p) for r in self.ood],
                }
                for p in self.params
            ],
            "success": self.success_doc,
            "reward": self.reward_doc,
        }

    def identity(self) -> dict[str, Any]:
        """What a trained policy depends on, to compare a saved run with the family as it is now: :meth:`describe`
        (parameters, regions, reward, success) and the SHA-256 of every asset file the model is built from."""
        files, todo = {}, [self.asset]
        while todo:
            name = todo.pop()
            text = (ASSETS / name).read_bytes()
            files[name] = hashlib.sha256(text).hexdigest()
            todo += [f.decode() for f in re.findall(rb'<include\s+file="([^"]+)"', text) if f.decode() not in files]
        return {**self.describe(), "assets": dict(sorted(files.items()))}


@functools.lru_cache(maxsize=512)
def _compile(family: Family, key: tuple[tuple[str, Value], ...]) -> mujoco.MjModel:
    return family.spec(dict(key)).compile()
