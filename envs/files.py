"""Writing files so that a failure never leaves a half-written one: write beside the target, then rename.

Every file robometa writes for a user (checkpoints, exports, pictures, videos, evaluation results) goes through
here. It lives in ``envs``, the lowest package, so that every package can use it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (matplotlib, imageio).

    When the block succeeds the file is renamed onto ``path`` (atomic within one file system: readers see the old
    file or the new one); when it fails the temporary file is removed and ``path`` is left as it was. The name
    starts with a dot and keeps ``path``'s suffix, since writers choose the format from it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # Persist the rename itself, so that after a power loss the folder names the new file, not a lost one.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a binary file that appears at ``path`` whole (flushed and fsynced) or not at all."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:  # "x": two writers never share a temporary file
        write(f)
        f.flush()
        os.fsync(f.fileno())
