"""Corpora: the embedded stdlib corpus, user files and folders, the split, errors."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from deepseek.data import open_corpus, path_corpus, stdlib_corpus
from deepseek.errors import UsageError


def test_stdlib_corpus_is_located_at_run_time_and_split_by_file() -> None:
    c = stdlib_corpus()
    root = Path(sysconfig.get_paths()["stdlib"])
    assert c.root == root
    train, val = c.pieces("train"), c.pieces("val")
    assert len(train) > 500 and len(val) > 20
    train_keys, val_keys = {p.key for p in train}, {p.key for p in val}
    assert not train_keys & val_keys
    assert all(k.endswith(".py") and "site-packages" not in k for k in train_keys | val_keys)
    assert "os.py" in train_keys | val_keys
    frac = c.num_bytes("val") / (c.num_bytes("val") + c.num_bytes("train"))
    assert 0.01 < frac < 0.15


def test_split_is_deterministic_and_per_file(tmp_path: Path) -> None:
    for i in range(200):
        (tmp_path / f"doc{i:03d}.txt").write_text(f"document {i}\n" * 3)
    a, b = path_corpus(tmp_path), path_corpus(tmp_path, val_fraction=0.05)
    assert [p.key for p in a.pieces("val")] == [p.key for p in b.pieces("val")]
    assert a.fingerprint("train") == b.fingerprint("train")
    # Adding files does not move existing ones between splits.
    (tmp_path / "extra.txt").write_text("more")
    c = path_corpus(tmp_path)
    assert {p.key for p in a.pieces("val")} <= {p.key for p in c.pieces("val")}
    assert a.fingerprint("train") != c.fingerprint("train") or "extra.txt" in {p.key for p in c.pieces("val")}
    assert 2 <= len(a.pieces("val")) <= 25


def test_large_file_is_cut_into_pieces(tmp_path: Path) -> None:
    f = tmp_path / "big.txt"
    f.write_bytes(b"abcdefghij" * 1000)
    c = path_corpus(f, val_fraction=0.2)
    c2 = type(c)(tmp_path, ["big.txt"], name="big", val_fraction=0.2, piece_bytes=512)
    pieces = c2.pieces("train") + c2.pieces("val")
    assert sum(p.length for p in pieces) == 10_000 and len(pieces) == 20
    assert all(p.key.startswith("big.txt#") for p in pieces)
    assert c.num_bytes("train") + c.num_bytes("val") == 10_000


def test_single_small_file_still_gets_a_val_split(tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("x" * 1000)
    c = path_corpus(f, val_fraction=0.1)
    assert c.num_bytes("val") == 100 and c.num_bytes("train") == 900
    assert c.pieces("val")[0].read(0, 5) == b"xxxxx"


def test_folder_pattern_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    (tmp_path / ".hidden.txt").write_text("secret")
    all_files = path_corpus(tmp_path)
    keys = {p.key for p in all_files.pieces("train") + all_files.pieces("val")}
    assert keys == {"sub/a.md", "b.txt"}
    md = path_corpus(tmp_path, pattern="**/*.md", val_fraction=0.0)
    assert [p.key for p in md.pieces("train")] == ["sub/a.md"] and md.pieces("val") == []


def test_missing_path_names_path_and_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(UsageError, match=r"data\.path: .*nope.* does not exist; point it at a text file"):
        open_corpus(missing)


def test_empty_folder_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no files matching"):
        open_corpus(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match="no text"):
        open_corpus(tmp_path)
    with pytest.raises(UsageError, match="pattern"):
        open_corpus(tmp_path, pattern="*.rst")


def test_empty_path_means_stdlib() -> None:
    assert open_corpus("").name.startswith("python-stdlib")


def test_a_path_that_is_neither_file_nor_folder_and_an_absolute_pattern_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"data\.path: '/dev/null' is neither a regular file nor a folder"):
        open_corpus("/dev/null")
    (tmp_path / "a.txt").write_text("hello\n" * 50)
    with pytest.raises(UsageError, match=r"data\.pattern: '/etc/\*' is not a glob pattern relative to data\.path"):
        open_corpus(tmp_path, pattern="/etc/*")


def test_a_file_that_is_not_utf8_is_refused_as_text_but_not_a_character_cut_by_a_pieces_edge(tmp_path: Path) -> None:
    """A tokenizer reads a piece as text: a Latin-1 file was read with U+FFFD for each accented
    letter without a word; now it is one line naming the file and the byte. A character of a UTF-8
    file that a piece's edge cuts (a file longer than one piece) is no such byte."""
    text = "héllo wörld ñandú €uro 𝄞 " * 40  # two-, three- and four-byte characters
    (tmp_path / "utf8.txt").write_text(text, encoding="utf-8")
    c = type(path_corpus(tmp_path))(tmp_path, ["utf8.txt"], name="u", val_fraction=0.2, piece_bytes=7)
    pieces = c.pieces("train") + c.pieces("val")
    assert len(pieces) > 100 and any(p.read(0, 1)[0] & 0xC0 == 0x80 for p in pieces)  # edges inside characters
    assert all("\ufffd" not in p.text(strict=True).strip("\ufffd") for p in pieces)  # U+FFFD only at the edges
    one = path_corpus(tmp_path / "utf8.txt", val_fraction=0.3)  # one piece: its tail is the validation split
    train, val = one.pieces("train")[0].text(strict=True), one.pieces("val")[0].text(strict=True)
    assert train.rstrip("\ufffd") in text and val.lstrip("\ufffd") in text
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("naïve café\n".encode("latin-1") * 3)
    c = path_corpus(latin, val_fraction=0.01)
    with pytest.raises(UsageError, match=rf"^data\.path: {str(latin)!r} is not UTF-8 text \(byte 0xef at offset 2\); "
                                         r"a tokenizer reads text: save the file as UTF-8 \(iconv -f latin1 -t utf-8\) "
                                         r"or leave it out with data\.pattern; or train on byte tokens"):
        c.pieces("train")[0].text(strict=True)
    assert c.pieces("train")[0].text(strict=False).startswith("na\ufffdve caf\ufffd")
    # the embedded corpus keeps its few Latin-1 and KOI8-R test files, with U+FFFD as before
    assert stdlib_corpus().strict_text is False and c.strict_text is True


def test_a_pattern_that_selects_nothing_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data.pattern with data.path a file, or empty (the embedded corpus), was ignored without a word."""
    from deepseek.config.ineffective import IneffectiveSettingWarning

    (tmp_path / "notes.txt").write_text("alpha beta " * 100)
    with pytest.warns(IneffectiveSettingWarning, match=r"^data\.pattern: '\*\.md' selects files under a data\.path "
                                                       r"folder, but data\.path '.*notes\.txt' is a file, read whole; "
                                                       r"the pattern is not used: remove data\.pattern"):
        corpus = open_corpus(tmp_path / "notes.txt", pattern="*.md", val_fraction=0.0)
    assert corpus.num_bytes("train") == len("alpha beta " * 100)  # read whole, as before
    with pytest.warns(IneffectiveSettingWarning, match=r"but data\.path is empty: the embedded corpus is read"):
        open_corpus(None, pattern="*.md")
    monkeypatch.setenv("RANK", "1")  # a job's other ranks say nothing
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_corpus(tmp_path / "notes.txt", pattern="*.md", val_fraction=0.0)
