"""Data files read back are opened as regular files only (``deepseek.parsing.open_file`` /
``read_text``): a text corpus file replaced by a FIFO after the corpus opened, a FIFO given to the
text check, a ``save_to_disk`` folder's ``state.json`` or a GPT-2 folder's ``config.json`` that is a
FIFO are refused in one line, never waited on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.data.corpus import path_corpus
from deepseek.data.hf_files import expand_files
from deepseek.data.text_check import check_file
from deepseek.errors import ConfigError, UsageError
from deepseek.interop.hf_import import is_gpt2_folder


def _refused(fn: Callable[[], Any], kind: type[Exception] = UsageError) -> Callable[[], str]:
    def call() -> str:
        with pytest.raises(kind) as info:
            fn()
        return str(info.value)
    return call


def test_a_corpus_file_replaced_by_a_fifo_is_refused_when_read(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("hello world\n" * 50)
    corpus = path_corpus(text, val_fraction=0.0)
    piece = corpus.pieces("train")[0]
    assert piece.read(0, 5) == b"hello"
    text.unlink()
    os.mkfifo(text)
    said = past_fifo(text, _refused(lambda: piece.read(0, 5)))
    assert said == (f"data.path: {str(text)!r} cannot be read (not a regular file (a FIFO, device or socket)); put a "
                    "regular file there or leave it out with data.pattern")


def test_the_text_check_refuses_a_fifo(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    fifo = tmp_path / "notes.txt"
    os.mkfifo(fifo)
    said = past_fifo(fifo, _refused(lambda: check_file(str(fifo), utf8=True)))
    assert said.startswith(f"data.path: {str(fifo)!r} cannot be read (not a regular file (a FIFO, device or socket))")


def test_a_saved_datasets_state_json_that_is_a_fifo(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    os.mkfifo(saved / "state.json")
    said = past_fifo(saved / "state.json", _refused(lambda: expand_files([str(saved)], "data.files"), ConfigError))
    assert said.startswith(f"data.files: {str(saved)!r} is a folder; name its files with a glob")


def test_a_gpt2_folder_whose_config_json_is_a_fifo_is_refused_unread(
        tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(UsageError, match=r"config\.json: cannot be read as JSON \(not a regular file"):
        past_fifo(tmp_path / "config.json", lambda: is_gpt2_folder(tmp_path))
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    assert is_gpt2_folder(tmp_path) is True
