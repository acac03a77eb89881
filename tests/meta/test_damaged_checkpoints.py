"""A damaged checkpoint is refused in one readable line, never loaded: bytes that were never a pickle are said so
(not as ``KeyError: 101`` or ``Unsupported operand 147``), and changed tensor bytes, which ``torch.load`` alone
loads, fail the archive's checksum."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from meta.checkpoint import Damaged, load, save

NEVER_A_PICKLE = "its bytes are neither a torch.save archive nor a pickle (damaged, or another kind of file)"


def _refusal(path: Path) -> str:
    with pytest.raises(Damaged) as e:
        load(path)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("data", [b"hello world\n", bytes(range(256)) * 8, b"\x80\x02" + bytes(64)])
def test_bytes_that_never_were_a_pickle_are_said_so_not_as_an_opcode_number(tmp_path, data: bytes) -> None:
    path = tmp_path / "latest.pt"
    path.write_bytes(data)
    assert _refusal(path) == f"{path} is not a robometa checkpoint or is damaged: {NEVER_A_PICKLE}"


def test_changed_tensor_bytes_fail_the_archive_checksum_though_torch_would_load_them(tmp_path) -> None:
    path = tmp_path / "latest.pt"
    save(path, {"weights": torch.zeros(256), "iteration": 3})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
        start = data.find(archive.read(member.filename))
    data[start + 100] = 1
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["weights"].count_nonzero() == 1  # what would otherwise be trained on
    assert _refusal(path) == (
        f"{path} is not a robometa checkpoint or is damaged: the bytes of {member.filename} are not those written "
        "(their checksum differs)"
    )
