"""The files of a ``data.path`` folder are checked as the corpus opens, not when the loader reaches
them (:mod:`deepseek.data.text_check`): one line naming the file, at once."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from deepseek.data import open_corpus
from deepseek.errors import UsageError

TEXT = "the cat sat on the mat while a dog ran in the park\n"


def _folder(root: Path, n: int = 30) -> Path:
    root.mkdir(exist_ok=True)
    for i in range(n):
        (root / f"doc{i:02d}.txt").write_text(TEXT * 40)
    return root


def _refused(root: Path, *, utf8: bool, match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        open_corpus(root, pattern="**/*.txt", utf8=utf8)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("utf8", [False, True], ids=["bytes", "tokenizer"])
@pytest.mark.parametrize(("content", "offset"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "8"),  # an image saved as .txt
    ("utf-16 text".encode("utf-16-le"), "1"),
    (TEXT.encode() * 25_000 + b"\x00tail", f"{len(TEXT) * 25_000:,}"),  # past the first 64 KiB and 1 MiB read
], ids=["binary", "utf-16", "late-nul"])
def test_a_file_with_a_nul_byte_is_refused_as_the_corpus_opens(tmp_path: Path, utf8: bool, content: bytes,
                                                               offset: str) -> None:
    """With byte tokens it was trained on without a word (byte 0, the document separator, cut it
    into documents); with a tokenizer it was refused only when a batch read it."""
    root = _folder(tmp_path / "corpus")
    (root / "doc17.txt").write_bytes(content)
    bad = re.escape(repr(str(root / "doc17.txt")))
    _refused(root, utf8=utf8, match=rf"^data\.path: {bad} is not text \(a NUL byte at offset {offset}: a binary "
                                    r"file, or UTF-16 text\); leave it out with data\.pattern \(e\.g\. '\*\*/\*\.txt'\),"
                                    r" or save it as UTF-8 text$")
    open_corpus(root, pattern="doc0*.txt", utf8=utf8)  # the fix the line names: leave it out


def test_a_file_that_is_not_utf8_is_refused_as_the_corpus_opens_with_a_tokenizer(tmp_path: Path) -> None:
    """It was refused only when a batch read it: mid-run, or never in a run that ended before."""
    root = _folder(tmp_path / "corpus")
    (root / "doc05.txt").write_bytes(TEXT.encode() * 2000 + "naïve\n".encode("latin-1"))
    bad = re.escape(repr(str(root / "doc05.txt")))
    _refused(root, utf8=True, match=rf"^data\.path: {bad} is not UTF-8 text \(byte 0xef at offset {len(TEXT) * 2000 + 2:,}\); a "
                                    r"tokenizer reads text: save the file as UTF-8")
    assert open_corpus(root, utf8=False).num_bytes("train") > 0  # byte tokens read Latin-1 as before


def test_utf8_across_read_chunks_and_a_character_cut_by_the_end(tmp_path: Path) -> None:
    """A character split between two of the check's 1 MiB reads is UTF-8; one cut by the end of
    the file is not, and its first byte is named."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_bytes(b"x" * ((1 << 20) - 1) + "é€𝄞".encode() * 10)  # é straddles the 1 MiB read
    (root / "b.txt").write_text(TEXT * 40)
    open_corpus(root, utf8=True)
    (root / "b.txt").write_bytes(b"abc" + "€".encode()[:2])
    _refused(root, utf8=True, match=rf"{re.escape(repr(str(root / 'b.txt')))} is not UTF-8 text \(byte 0xe2 at offset 3\)")


def test_a_broken_symbolic_link_the_pattern_matches_is_refused(tmp_path: Path) -> None:
    """It was skipped without a word: the corpus lost a file the folder seemed to hold."""
    root = _folder(tmp_path / "corpus")
    (root / "doc30.txt").symlink_to(tmp_path / "moved-away.txt")
    (root / "doc31.txt").symlink_to("doc31.txt")  # a loop
    _refused(root, utf8=False, match=rf"^data\.path: {re.escape(repr(str(root / 'doc30.txt')))} is a symbolic link "
                                     rf"to {re.escape(str(tmp_path / 'moved-away.txt'))}, which does not exist; fix or "
                                     r"remove the link, or leave it out with data\.pattern$")
    (root / "doc30.txt").unlink()
    _refused(root, utf8=False, match=rf"^data\.path: {re.escape(repr(str(root / 'doc31.txt')))} is a loop of symbolic links; fix")
    (root / "doc31.txt").unlink()
    (root / "doc29.txt").rename(tmp_path / "elsewhere.txt")
    (root / "doc29.txt").symlink_to(tmp_path / "elsewhere.txt")  # a link that leads to a file is read
    assert len(open_corpus(root).pieces("train") + open_corpus(root).pieces("val")) == 30


def test_empty_files_and_folders_the_pattern_matches_are_not_read(tmp_path: Path) -> None:
    """An empty file holds no text (a package's empty ``__init__.py``), and a folder named
    ``*.txt`` is no file: both are passed over, and only they."""
    root = _folder(tmp_path / "corpus", n=10)
    (root / "empty.txt").write_bytes(b"")
    (root / "more.txt").mkdir()
    (root / "more.txt" / "inner.txt").write_text(TEXT)
    corpus = open_corpus(root, pattern="**/*.txt", utf8=True, val_fraction=0.0)
    assert sorted(p.key for p in corpus.pieces("train")) == [f"doc{i:02d}.txt" for i in range(10)] + ["more.txt/inner.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_a_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path / "corpus")
    (root / "doc03.txt").chmod(0)
    _refused(root, utf8=False, match=rf"^data\.path: {re.escape(repr(str(root / 'doc03.txt')))} cannot be read \(Permission denied\); "
                                     r"make it readable \(chmod a\+r\) or leave it out with data\.pattern$")


@pytest.mark.parametrize(("utf8", "bad", "says"), [
    (False, b"\x00", "is not text (a NUL byte at offset {at:,}:"),
    (True, b"\xe9", "is not UTF-8 text (byte 0xe9 at offset {at:,});"),
], ids=["bytes", "tokenizer"])
def test_a_bad_byte_deep_in_a_corpus_over_256_mib_is_refused_as_it_opens(tmp_path: Path, utf8: bool, bad: bytes,
                                                                          says: str) -> None:
    """Every byte is checked as the corpus opens, whatever its size: a corpus over 256 MiB had
    only each file's first 64 KiB checked then, and a bad byte after them was found mid-training."""
    root = _folder(tmp_path / "corpus", n=2)
    at = (257 << 20) + 5
    with (root / "doc01.txt").open("wb") as f:
        block = b"a" * (1 << 20)
        for _ in range(257):
            f.write(block)
        f.write(b"bbbbb" + bad + b"\n")
    try:
        _refused(root, utf8=utf8, match=rf"^data\.path: {re.escape(repr(str(root / 'doc01.txt')))} "
                                        f"{re.escape(says.format(at=at))}")
    finally:
        (root / "doc01.txt").unlink()
