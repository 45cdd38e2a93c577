"""Tokenizer files that are no regular file of bounded size (a FIFO, a 2 GiB file, a document
nested past the stack) where deepseek reads a tokenizer: ``data.tokenizer``, the
``tokenizer_config.json`` beside a ``tokenizer.json``, and an existing ``tokenizer train --out``.
Each is one line, exit 2, nothing written; none blocks the command (a FIFO with no writer blocked
``open`` for good). Everything here runs in-process on files made here.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

tokenizers = pytest.importorskip("tokenizers")

from _eco_cli import refused  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402

SMALL = ["--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2", "--set",
         "model.n_layers=1", "--set", "model.max_seq_len=32", "--set", "data.seq_len=16", "--set", "data.batch_size=4",
         "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"", "--precision", "fp32", "--quiet",
         "--max-steps", "1"]


@contextmanager
def unblocked(what: str, seconds: float = 60) -> Iterator[None]:
    """Fail the test (not an OSError, which readers catch) when the block is still blocked after
    ``seconds``: SIGALRM sent to this thread interrupts a blocked ``open``."""

    def stuck(*_: Any) -> None:
        pytest.fail(f"reading {what} blocked")

    handler = signal.signal(signal.SIGALRM, stuck)
    timer = threading.Timer(seconds, signal.pthread_kill, (threading.get_ident(), signal.SIGALRM))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGALRM, handler)


def tokenizer_folder(folder: Path) -> Path:
    """A byte-level BPE with ``<|endoftext|>`` saved as ``folder/tokenizer.json``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["alpha beta gamma"] * 20, trainers.BpeTrainer(
        vocab_size=270, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def sparse(path: Path, size: int = 2 << 30) -> None:
    with path.open("wb") as fh:
        fh.truncate(size)  # no disk used


@pytest.mark.parametrize("kind", ["fifo", "2 GiB"])
def test_a_tokenizer_json_that_is_a_fifo_or_2gib_is_one_line(host: PluginHost, tmp_path: Path, kind: str) -> None:
    """``tokenizer info`` on a FIFO blocked for good; a 2 GiB ``data.tokenizer`` was read whole
    twice (by the config's check of its separator, then by the tokenizer's loading) before it was
    refused as not JSON; the config refuses a FIFO as no file."""
    bad = tmp_path / "tokenizer.json"
    os.mkfifo(bad) if kind == "fifo" else sparse(bad)
    reason = ("not a regular file (a FIFO, device or socket)" if kind == "fifo" else
              "larger than 268,435,456 bytes, the most such a file has")
    with unblocked(f"a {kind} tokenizer.json"):
        info = refused(host, "tokenizer", "info", str(bad))
        train = refused(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(bad))}",
                        "--run-dir", str(tmp_path / "r"))
    assert info == (f"error: tokenizer info: cannot read {str(bad)!r} ({reason}); point it at a tokenizer.json "
                    "('deepseek tokenizer train' writes one)")
    assert train == (f"error: data.tokenizer: {str(bad)!r} is not a file; point it at a tokenizer.json (or a "
                     "transformers tokenizer folder; 'deepseek tokenizer train' writes one) or leave it empty for "
                     "byte tokens" if kind == "fifo" else info.replace("tokenizer info:", "data.tokenizer:"))
    assert not (tmp_path / "r").exists()


def test_a_fifo_tokenizer_config_beside_a_tokenizer_is_one_line(host: PluginHost, tmp_path: Path) -> None:
    """The ``tokenizer_config.json`` a tokenizer folder holds (read for its ``eos_token``) as a FIFO
    blocked the command for good."""
    folder = tokenizer_folder(tmp_path / "tok")
    os.mkfifo(folder / "tokenizer_config.json")
    with unblocked("a fifo tokenizer_config.json"):
        line = refused(host, "tokenizer", "info", str(folder))
    assert line == (f"error: {folder / 'tokenizer_config.json'}: cannot be read as JSON (not a regular file (a FIFO, "
                    "device or socket)); it declares the tokenizer's eos_token (the document separator): save the "
                    "tokenizer again, or remove the file")


def test_an_out_nested_past_the_stack_is_refused_as_not_a_tokenizer(host: PluginHost, tmp_path: Path) -> None:
    """``tokenizer train --out`` over an existing file checks it is a tokenizer.json first: a file
    of 100,000 ``[`` raised RecursionError from json.loads (a traceback, exit 1)."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("alpha beta " * 50)
    out = tmp_path / "deep.json"
    out.write_text("[" * 100_000)
    line = refused(host, "tokenizer", "train", "--data", str(tmp_path / "c"), "--vocab-size", "260", "--out", str(out))
    assert line == (f"error: --out {out}: exists and is not a tokenizer.json (a data file? a config?); give a new file "
                    "path, or remove that file first (nothing was written)")
    assert out.read_text() == "[" * 100_000
