"""``deepseek.parsing.open_file`` (every bounded read goes through it) given a folder: an
``IsADirectoryError`` naming the folder, with no descriptor left open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepseek.parsing import read_file, read_tail


@pytest.mark.parametrize("read", [read_file, lambda p: read_tail(p, 10)], ids=["read_file", "read_tail"])
def test_a_folder_is_refused_by_its_name_and_its_descriptor_closed(tmp_path: Path, read) -> None:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    free = os.open(probe, os.O_RDONLY)  # the lowest free descriptor
    os.close(free)
    for _ in range(3):
        with pytest.raises(IsADirectoryError) as caught:
            read(tmp_path)
        assert caught.value.filename == str(tmp_path)  # was the descriptor's number (3, 4, 5 ...)
    again = os.open(probe, os.O_RDONLY)
    os.close(again)
    assert again == free  # was free + 3: each refusal left its descriptor open
