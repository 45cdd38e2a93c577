"""BPE tokenizer inputs refused or reported without a trained tokenizer: hostile tokenizer files
and folders for ``data.tokenizer``, hostile ``deepseek tokenizer train`` options and training text
that holds nothing (one line each, nothing written), and a corpus folder name printed escaped.
The tests that share the module's trained tokenizer and run are in test_tokenizer.py. Every file
is written here; nothing is downloaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")

from _bpe_corpus import SMALL, write_corpus  # noqa: E402
from _eco_cli import ok, refused, run  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402

SPARSE = json.dumps({"version": "1.0", "added_tokens": [{"id": 3, "content": "<|endoftext|>", "single_word": False,
                     "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
                     "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 5000, "[UNK]": 1}, "unk_token": "[UNK]"}}
                    ).encode()
"""A tokenizer.json whose ids skip to 5000 for 4 tokens (an embedding of 4 rows would be indexed past its end)."""

MISNUMBERED = json.dumps({"version": "1.0", "added_tokens": [{"id": 7, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
                          "model": {"type": "WordLevel", "vocab": {"a": 0, "[UNK]": 1}, "unk_token": "[UNK]"}}
                         ).encode()
"""An added token whose stated id the library ignores (it numbers it 2): the file was edited."""


@pytest.mark.parametrize(("content", "words"), [
    (b"{not json", ["is not valid JSON"]),
    (b'{"version": "1.0"}', ["is not a Hugging Face tokenizers file"]),
    (b"\xff\xfe", ["is not valid JSON"]),
    (SPARSE, ["has token ids that do not run 0..3 (largest 5000, 0 repeated) for its 4 tokens"]),
    (MISNUMBERED, ["added_tokens[0] '<|endoftext|>' states id 7, but the tokenizer gives it id 2"]),
])
def test_bad_tokenizer_files_are_one_line(host: PluginHost, tmp_path: Path, content: bytes, words: list[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    line = refused(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(bad))}",
                   "--run-dir", str(tmp_path / "r"))
    assert "data.tokenizer" in line and str(bad) in line
    for w in words:
        assert w in line
    assert not (tmp_path / "r").exists()


def test_a_tokenizer_folder_whose_tokenizer_json_is_a_folder_says_so(host: PluginHost, tmp_path: Path) -> None:
    """It said the folder 'has no tokenizer.json', which the user could see it had."""
    (tmp_path / "tok" / "tokenizer.json").mkdir(parents=True)
    expected = (f"{str(tmp_path / 'tok' / 'tokenizer.json')!r} is not a file (a folder, device or socket); put the "
                "tokenizer.json that tokenizers saved there, or name a tokenizer.json file")
    line = refused(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(tmp_path / 'tok'))}",
                   "--run-dir", str(tmp_path / "r"))
    assert line == f"error: data.tokenizer: {expected}"
    assert refused(host, "tokenizer", "info", str(tmp_path / "tok")) == f"error: tokenizer info: {expected}"
    assert not (tmp_path / "r").exists()


def test_tokenizer_train_hostile_options(host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("alpha beta " * 100)
    assert "--vocab-size" in refused(host, "tokenizer", "train", "--data", str(tmp_path / "c"), "--vocab-size", "100",
                                     "--out", str(tmp_path / "t.json"))
    line = refused(host, "tokenizer", "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t.json"))
    assert line.startswith("error: --data: ") and "does not exist" in line
    (tmp_path / "afile").write_text("x")
    line = refused(host, "tokenizer", "train", "--data", str(tmp_path / "c"), "--out", str(tmp_path / "afile" / "t.json"))
    assert "--out" in line
    assert not (tmp_path / "t.json").exists()
    code, _, err = run(host, "tokenizer", "train", "--data", str(tmp_path / "c" / "a.txt"), "--pattern", "*.md",
                       "--vocab-size", "260", "--out", str(tmp_path / "t.json"))  # was ignored without a word
    assert code == 0 and re.search(r"^warning: --pattern: '\*\.md' selects files under a --data folder, but --data "
                                   r"'.*a\.txt' is a file, read whole; the pattern is not used: remove --pattern",
                                   err, re.M), err


@pytest.mark.parametrize("content", ["", '{"text": ""}\n{"text": ""}\n'], ids=["empty-file", "empty-texts"])
def test_training_text_that_holds_nothing_is_refused_before_writing(host: PluginHost, tmp_path: Path,
                                                                    content: str) -> None:
    """An empty file wrote the tokenizer, then failed with ZeroDivisionError (exit 1); empty texts
    wrote a 257-token tokenizer (exit 0)."""
    (tmp_path / "e.jsonl").write_text(content)
    (tmp_path / "v.jsonl").write_text('{"text": "alpha beta"}\n')
    line = refused(host, "tokenizer", "train", "--files", str(tmp_path / "e.jsonl"), "--val-files",
                   str(tmp_path / "v.jsonl"), "--vocab-size", "300", "--out", str(tmp_path / "t.json"))
    assert "the training split of 1 file" in line and "holds no text" in line, line
    assert not (tmp_path / "t.json").exists()


def test_tokenizer_train_names_a_corpus_folder_with_a_line_break_and_an_escape_escaped(host: PluginHost,
                                                                                        tmp_path: Path) -> None:
    """'trained on N bytes of FOLDER' printed the folder raw."""
    corpus = write_corpus(tmp_path / "c\nx\x1b[2J")
    out = ok(host, "tokenizer", "train", "--data", str(corpus), "--vocab-size", "300", "--out", str(tmp_path / "t.json"))
    assert "\x1b" not in out
    assert f" bytes of $'{tmp_path}/c\\nx\\x1b[2J'\n" in out
