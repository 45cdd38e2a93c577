"""A checkpoint whose ``trainer.json`` is no trainer state a run wrote: a FIFO (a read waited for a
writer forever), a folder, a broken link, a file of 2 GiB (read whole: minutes and gigabytes of
memory) or JSON nested 100,000 levels deep (Python's parser recursed past the stack). ``eval``,
``generate`` and ``train --resume`` refuse each with one line saying what is there (the commit
record's check said ``trainer.json missing`` of a FIFO, a folder and a broken link), exit 2, the
run as it was; a folder holding nothing but a broken ``trainer.json`` link is a checkpoint whose
trainer state is not a regular file, as one holding a FIFO there is (it was "holds no checkpoint")."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hostile_cli import Hostile, assert_refused

READERS = {
    "eval": ["eval", "--checkpoint", "run", "--device", "cpu"],
    "generate": ["generate", "--checkpoint", "run", "--max-new-tokens", "2", "--device", "cpu"],
    "resume": ["train", "--resume", "run", "--max-steps", "3", "--quiet"],
}
INCOMPLETE = "run: no complete checkpoint to load: step-1 is incomplete (trainer.json "


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _broken_link(path: Path) -> None:
    path.unlink()
    path.symlink_to("gone.json")


def _huge(path: Path) -> None:
    with path.open("r+b") as fh:  # NUL bytes past its content, no disk space taken
        fh.truncate(2 << 30)


def _deep(path: Path) -> None:
    text = path.read_text().rstrip()
    path.write_text(text[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _unrecorded(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """``damage`` to a checkpoint without a commit record (an older version's): its trainer.json is read."""
    def corrupt(path: Path) -> None:
        (path.parent / "commit.json").unlink()
        damage(path)
    return corrupt


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("a FIFO", _fifo, INCOMPLETE + "is not a regular file (a FIFO, device or socket))"),
    ("a folder", _folder, INCOMPLETE + "is a folder)"),
    ("a broken link", _broken_link, INCOMPLETE + "is a symbolic link to gone.json, which does not exist)"),
    ("a FIFO, no commit record", _unrecorded(_fifo), INCOMPLETE + "is not a regular file (a FIFO, device or socket))"),
    ("2 GiB", _huge, INCOMPLETE + "is corrupt or truncated: 2147483648 bytes, "),  # its size, not read
    ("2 GiB, no commit record", _unrecorded(_huge),
     "trainer.json: trainer state is corrupt or truncated (larger than 16,777,216 bytes, the most such a file has)"),
    ("nested 100,000 deep, no commit record", _unrecorded(_deep),
     "trainer.json: trainer state is corrupt or truncated (nested deeper than 64 levels of arrays and tables); "),
]


def _listing(root: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and times under ``root`` (read nothing: the 2 GiB file stays unread)."""
    return [(str(p), p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob("*"))]


@pytest.mark.parametrize(("what", "damage", "words"), CASES, ids=[c[0] for c in CASES])
def test_trainer_state_that_is_no_file_a_run_wrote_is_one_line(hostile: Hostile, trained_run: Path, past_fifo: Any,
                                                               what: str, damage: Callable[[Path], None],
                                                               words: str) -> None:
    run = hostile.work / "run"
    shutil.copytree(trained_run, run)
    state = run / "checkpoints" / "step-1" / "trainer.json"
    damage(state)
    before = _listing(hostile.work)
    for reader, argv in READERS.items():
        line = past_fifo(state, lambda argv=argv: assert_refused(hostile.run(*argv), [words]))
        assert line.count("\n") == 0, (reader, line)
    assert _listing(hostile.work) == before


def test_a_folder_holding_only_a_broken_trainer_state_link_is_a_checkpoint(hostile: Hostile) -> None:
    """Its trainer.json as a FIFO or a folder was refused as the checkpoint's incomplete state; as a
    broken link ``eval`` said the folder "holds no checkpoint" and ``train --resume`` that it
    "contains no complete checkpoint" (``Path.exists`` of a dangling link is false)."""
    lone = hostile.work / "lone"
    lone.mkdir()
    (lone / "trainer.json").symlink_to("gone.json")
    for argv in (["eval", "--checkpoint", "lone", "--device", "cpu"], ["train", "--resume", "lone", "--quiet"]):
        hostile.refused(*argv, expect=["lone/trainer.json: is not a regular file; the checkpoint is incomplete"])
