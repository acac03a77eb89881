import pytest

# `envs` chooses the offscreen GL backend (MUJOCO_GL) before mujoco is first imported; importing it here first
# keeps rendering tests independent of which test module pytest happens to collect first.
import envs  # noqa: F401


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_in_a_temporary_folder(tmp_path_factory):
    """SB3's default logger makes an empty ``SB3-<time>`` folder in the system's temporary directory on every
    ``learn()``; tests that train SB3 models directly (and the CLI processes they start) put it here instead."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3-logs")))
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _mujoco_warnings_in_a_temporary_folder(tmp_path_factory):
    """MuJoCo writes its warnings (an unstable simulation, which some tests provoke) to ``MUJOCO_LOG.TXT`` in the
    current folder, the checkout when pytest runs there; in-process code that is not training or evaluating a run
    (those log to their run folder) logs here instead."""
    from meta.runs import RunFolder, mujoco_log

    with mujoco_log(RunFolder(tmp_path_factory.mktemp("mujoco-log"))):
        yield
