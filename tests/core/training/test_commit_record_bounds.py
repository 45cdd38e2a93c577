"""A checkpoint's commit record (``commit.json``) bounds the work of checking it: every file it
lists is read whole for its CRC-32 (weights have no size cap), so a record naming a file outside
the folder (``../x``, ``/abs/x``: by hand or forged, with that file's size) had any file on the
machine read whole, and a file that grew after its size was checked was read to its new end.
Now such a name is refused before anything is looked at, and a file whose size is not the one
recorded is refused before (and never read past) that size. Records of every age still read:
one without checksums (sizes only) is taken on its sizes."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest

from deepseek.errors import CheckpointError
from deepseek.training.checkpoint_digest import checksums_of, crc32_of
from deepseek.training.checkpoint_lookup import checksum_note, resolve_checkpoint
from deepseek.training.checkpoint_record import inspect_checkpoint

FILES = {"trainer.json": b'{"step": 1}', "model.safetensors": b"w" * 4096}


def _checkpoint(root: Path, extra: dict[str, int] | None = None, *, checksums: bool = True) -> Path:
    folder = root / "ck"
    folder.mkdir()
    for name, body in FILES.items():
        (folder / name).write_bytes(body)
    files = {name: len(body) for name, body in FILES.items()}
    record: dict[str, object] = {"seq": 1, "files": {**files, **(extra or {})}}
    if checksums:
        record["crc32"] = {**checksums_of(folder, files), **dict.fromkeys(extra or {}, "00000000")}
    (folder / "commit.json").write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_a_record_listing_a_file_outside_the_folder_is_refused_unread(tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside.bin"
    with open(outside, "wb") as fh:  # sparse: big on paper, nothing on disk
        fh.truncate(256 << 20)
    name = "../outside.bin" if where == "relative" else str(outside)
    folder = _checkpoint(tmp_path, {name: outside.stat().st_size})
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(folder)
    assert str(caught.value).startswith(
        f"{folder}: the checkpoint is incomplete (commit.json unreadable (files lists {name!r}, which is no file "
        "inside the checkpoint folder)); use an earlier checkpoint")


def test_a_file_grown_after_its_size_was_checked_is_refused_by_its_size(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path)
    found = inspect_checkpoint(folder, 0)
    assert found.problem is None and found.damage() is None
    with open(folder / "model.safetensors", "ab") as fh:  # grows between the size check and the checksum
        fh.truncate(1 << 30)
    assert found.damage() == "model.safetensors is corrupt or truncated: 1073741824 bytes, 4096 were written"


def test_a_checksum_reads_no_further_than_the_recorded_size_allows(tmp_path: Path) -> None:
    data = bytes(range(200))
    (tmp_path / "f").write_bytes(data)
    assert crc32_of(tmp_path / "f", 9) == f"{zlib.crc32(data[:10]):08x}"
    assert crc32_of(tmp_path / "f") == crc32_of(tmp_path / "f", 500) == f"{zlib.crc32(data):08x}"


def test_an_older_record_without_checksums_is_taken_on_its_sizes(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path, checksums=False)
    assert resolve_checkpoint(folder) == folder
    assert checksum_note(folder) == "none (committed before records carried them; sizes checked)"
    os.truncate(folder / "model.safetensors", 100)
    with pytest.raises(CheckpointError, match=r"incomplete \(model\.safetensors is corrupt or truncated: 100 bytes, "
                                              r"4096 were written\)"):
        resolve_checkpoint(folder)
