"""Training checkpoints: written atomically, read back without running any code stored in the file.

A checkpoint is a ``torch.save`` of a dict tagged ``"format": FORMAT``. :func:`save` writes it to a temporary
file beside the target and renames it into place, so a crash mid-write leaves the previous checkpoint intact.
:func:`load` uses ``torch.load(..., weights_only=True)``, whose unpickler builds only tensors and plain
containers and refuses any other global (such as ``os.system``) before calling it, so a tampered or foreign
file cannot execute code; every failure is a one-line ``ValueError`` naming the file (:class:`Damaged` for a file
that is there but is not a whole robometa checkpoint). ``torch.load`` does not check the zip archive's CRC-32
checksums, so a file whose tensor bytes were changed would load; :func:`load` checks them first.

What a state may hold is what ``weights_only`` loading accepts: tensors, dicts, lists, tuples, ``int``,
``float``, ``bool``, ``str``, ``bytes`` and ``None``. That covers model and optimizer ``state_dict()``s,
``torch.get_rng_state()`` and a numpy Generator's ``bit_generator.state`` (a dict of Python ints, arbitrarily
large). numpy arrays and scalars (``np.float64`` from ``.mean()``) are not: :func:`save` refuses them, naming
the entry, rather than writing a file that :func:`load` would later refuse.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from envs.files import atomic_write

FORMAT = "robometa-checkpoint-v1"

_UNREADABLE = "its bytes are neither a torch.save archive nor a pickle (damaged, or another kind of file)"


class Damaged(ValueError):
    """A file where a checkpoint should be that is not a whole robometa checkpoint: cut short, changed, foreign or
    malicious. A caller that keeps other checkpoints can name them."""


_PLAIN = (int, float, bool, str, bytes, type(None), torch.dtype, torch.device)


def _check_storable(value: Any, where: str) -> None:
    """Raise ``ValueError`` naming the first entry of ``value`` that ``weights_only`` loading would refuse."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN:
        return
    if type(value) in (dict, OrderedDict):  # a module's state_dict() is an OrderedDict
        for k, v in value.items():
            if type(k) not in _PLAIN:
                raise ValueError(f"{where} has a key of type {type(k).__name__}: use str or int keys")
            _check_storable(v, f"{where}[{k!r}]")
        return
    if type(value) in (list, tuple, torch.Size):
        for i, v in enumerate(value):
            _check_storable(v, f"{where}[{i}]")
        return
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    raise ValueError(
        f"{where} is a {kind}, which a checkpoint cannot hold: use tensors, numbers, strings, lists and dicts"
    )


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``{"format": FORMAT, **state}`` to ``path`` atomically (creating its folder if needed).

    The data goes to a temporary file in the same folder, is flushed and fsynced, then renamed onto ``path``
    with ``os.replace`` (atomic within one file system): readers see the old file or the new one, never a
    partial one, and a failure removes the temporary file and leaves ``path`` as it was.
    """
    path = Path(path)
    if "format" in state:
        raise ValueError("state has a 'format' entry: that key is reserved for the checkpoint format tag")
    _check_storable(state, "state")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def _reason(e: BaseException) -> str:
    """A one-line summary of why ``torch.load`` failed: its messages run to several lines of advice, or are an
    opcode's number (``KeyError: 101``, ``Unsupported operand 147``) where the bytes were never a pickle."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        # The useful line is the unpickler's own complaint, below a paragraph about weights_only defaults.
        for line in lines[1:]:
            detail = line.partition("WeightsUnpickler error:")[2].strip() if "WeightsUnpickler error:" in line else line
            if detail.startswith("Unsupported operand"):
                return _UNREADABLE
            if detail and not detail.startswith("Check the documentation"):
                return f"refused by the safe unpickler: {detail}"
        return "refused by the safe unpickler"
    if isinstance(e, KeyError | UnicodeDecodeError | pickle.UnpicklingError):
        return _UNREADABLE
    if not lines:
        return "the file ends too early" if isinstance(e, EOFError) else type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        return f"the archive is cut short or corrupt ({e.strerror})"
    first = lines[0].split(". ")[0]
    return first if isinstance(e, RuntimeError) else f"{type(e).__name__}: {first}"


def _changed_member(path: Path) -> str | None:
    """Why the zip archive at ``path`` is not as it was written (a member whose bytes fail their CRC-32, or a broken
    directory), or ``None``; ``None`` too for a file that is no zip archive, which ``torch.load`` then refuses."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        return f"its zip directory is damaged ({e})"
    return None if bad is None else f"the bytes of {bad} are not those written (their checksum differs)"


def load(path: str | Path) -> dict[str, Any]:
    """The state :func:`save` wrote to ``path``, tensors on the CPU, without the ``"format"`` tag.

    Raises a one-line ``ValueError`` naming the file when it is missing or unreadable, and :class:`Damaged` when it
    is truncated or corrupt, not a robometa checkpoint, or holds anything but tensors and plain data (such as a
    pickled call).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    changed = _changed_member(path)
    if changed is not None:
        raise Damaged(f"{path} is not a robometa checkpoint or is damaged: {changed}")
    try:
        with warnings.catch_warnings():  # torch warns about old pickle formats before refusing; we say it in one line
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except PermissionError as e:
        raise ValueError(f"checkpoint {path} cannot be read: {e.strerror}") from None
    except Exception as e:
        # A damaged file can fail anywhere in the zip reader or the unpickler (RuntimeError, EOFError, OSError
        # "Invalid argument" for a cut zip, UnpicklingError, KeyError, zipfile.BadZipFile, ...): all mean the same.
        raise Damaged(f"{path} is not a robometa checkpoint or is damaged: {_reason(e)}") from None
    if not isinstance(state, dict) or "format" not in state:
        raise Damaged(f"{path} is not a robometa checkpoint or is damaged: it has no 'format' entry")
    if state["format"] != FORMAT:
        raise Damaged(
            f"{path} is not a robometa checkpoint or is damaged: format {state['format']!r} is not {FORMAT!r}"
        )
    del state["format"]
    return state
