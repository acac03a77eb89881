"""Checkpoints: round trip, atomic replacement, one-line refusals of missing, damaged, foreign and malicious files."""

from __future__ import annotations

import os
import pickle
import shlex

import numpy as np
import pytest
import torch

from meta import checkpoint
from meta.checkpoint import FORMAT, load, save


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a tampered checkpoint could do."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _one_line_error(path) -> str:
    with pytest.raises(ValueError) as e:
        load(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip_keeps_tensors_nested_containers_and_rng_states(tmp_path) -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    gen = np.random.default_rng(7)
    gen.random(3)  # move off the seed so the state is not the trivial one
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "nested": {"log": [1, 2.5, "x", None, True], "inner": {"t": torch.arange(4)}, "pair": (1, 2)},
        "iteration": 12,
        "big": 2**200,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": gen.bit_generator.state,
    }
    save(tmp_path / "ckpt.pt", state)
    torch_expected, numpy_expected = torch.rand(5), gen.random(5)

    back = load(tmp_path / "ckpt.pt")
    assert set(back) == set(state)  # the format tag is not handed back
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert back["nested"]["log"] == [1, 2.5, "x", None, True] and back["nested"]["pair"] == (1, 2)
    assert torch.equal(back["nested"]["inner"]["t"], torch.arange(4))
    assert (back["iteration"], back["big"]) == (12, 2**200)
    assert back["numpy_rng"] == state["numpy_rng"]

    # Restoring the saved RNG states replays the same draws.
    torch.set_rng_state(back["torch_rng"])
    assert torch.equal(torch.rand(5), torch_expected)
    other = np.random.default_rng()
    other.bit_generator.state = back["numpy_rng"]
    assert np.array_equal(other.random(5), numpy_expected)


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "latest.pt"
    save(path, {"iteration": 1})
    before = path.read_bytes()

    def crash_midway(obj, f) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="No space left"):
        save(path, {"iteration": 2})

    def interrupted(obj, f) -> None:
        f.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "first.pt", {"iteration": 2})
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert load(path) == {"iteration": 1}
    assert sorted(os.listdir(tmp_path)) == ["latest.pt"]


def test_save_replaces_an_existing_checkpoint_and_creates_the_folder(tmp_path) -> None:
    path = tmp_path / "run" / "ckpt" / "latest.pt"
    save(path, {"iteration": 1})
    save(path, {"iteration": 2})
    assert load(path) == {"iteration": 2}
    assert os.listdir(path.parent) == ["latest.pt"]


def test_save_refuses_values_that_safe_loading_would_refuse(tmp_path) -> None:
    with pytest.raises(ValueError) as e:
        save(tmp_path / "c.pt", {"stats": {"returns": [1.0, np.float64(2.0)]}})
    assert str(e.value).startswith("state['stats']['returns'][1] is a numpy.float64, which a checkpoint cannot hold")
    with pytest.raises(ValueError, match="'format' entry"):
        save(tmp_path / "c.pt", {"format": "mine"})
    assert not os.listdir(tmp_path)


def test_missing_file_is_a_one_line_error(tmp_path) -> None:
    assert _one_line_error(tmp_path / "none.pt") == f"no checkpoint at {tmp_path / 'none.pt'}"


@pytest.mark.parametrize("keep", [0, 0.5, 0.9])
def test_truncated_file_is_a_one_line_error(tmp_path, keep: float) -> None:
    path = tmp_path / "ckpt.pt"
    save(path, {"weights": torch.randn(64, 64), "iteration": 3})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert "is not a robometa checkpoint or is damaged" in _one_line_error(path)


def test_foreign_torch_file_is_a_one_line_error(tmp_path) -> None:
    torch.save({"x": 1}, tmp_path / "other.pt")
    assert _one_line_error(tmp_path / "other.pt").endswith("it has no 'format' entry")
    torch.save({"format": "someone-else-v3"}, tmp_path / "other.pt")
    assert "format 'someone-else-v3' is not" in _one_line_error(tmp_path / "other.pt")
    torch.save([1, 2], tmp_path / "other.pt")
    assert _one_line_error(tmp_path / "other.pt").endswith("it has no 'format' entry")


def test_malicious_pickles_are_refused_without_running(tmp_path) -> None:
    # The payload is live: unpickling it the unsafe way does create its marker.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control), protocol=2))
    assert control.exists()

    marker = tmp_path / "pwned"
    torch.save({"format": FORMAT, "x": _Payload(marker)}, tmp_path / "zip.pt")
    with open(tmp_path / "plain.pt", "wb") as f:
        pickle.dump({"format": FORMAT, "x": _Payload(marker)}, f, protocol=2)
    for name in ("zip.pt", "plain.pt"):
        message = _one_line_error(tmp_path / name)
        assert "is not a robometa checkpoint or is damaged: refused by the safe unpickler" in message
        assert "system" in message
    assert not marker.exists()


def test_format_tag_is_versioned() -> None:
    assert checkpoint.FORMAT == "robometa-checkpoint-v1"
