# `envs` chooses the offscreen GL backend (MUJOCO_GL) before mujoco is first imported; importing it here first
# keeps rendering tests independent of which test module pytest happens to collect first.
import envs  # noqa: F401
