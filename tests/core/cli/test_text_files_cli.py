"""``deepseek train`` on a folder one of whose files is no text refuses it before the run folder
is written: one line naming the file, exit 2 (see tests/core/data/test_text_files_checked.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_cli import TINY, Hostile


@pytest.mark.parametrize(("make", "expect"), [
    (lambda bad: bad.write_bytes(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200), "is not text (a NUL byte at offset 7:"),
    (lambda bad: bad.symlink_to("moved-away.txt"), "is a symbolic link to moved-away.txt, which does not exist"),
], ids=["binary", "broken-link"])
def test_a_file_that_is_no_text_is_refused_before_the_run_folder(hostile: Hostile, make: object, expect: str) -> None:
    """A binary file was trained on without a word (byte tokens read any bytes, and its NUL bytes
    cut it into documents); a broken link was passed over. Both runs ended with exit 0."""
    corpus = hostile.work / "notes"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"note{i:02d}.txt").write_text("a corpus of plain notes, not code\n" * 50)
    bad = corpus / "note07.txt"
    bad.unlink()
    make(bad)  # type: ignore[operator]
    line = hostile.refused("train", *TINY, "--set", "data.path=notes", "--run-dir", "runs/notes",
                           expect=[f"data.path: {str(Path.cwd() / 'notes' / 'note07.txt')!r} {expect}",
                                   "leave it out with data.pattern"])
    assert not (hostile.work / "runs").exists(), line
