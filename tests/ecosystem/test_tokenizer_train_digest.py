"""``deepseek tokenizer train`` takes the tokenizer's identity (the digest a checkpoint records)
from the bytes it wrote, not from reading ``--out`` back: a FIFO put there right after the write
was waited on for good."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tokenizers")

from _bpe_corpus import write_corpus  # noqa: E402
from _eco_cli import ok  # noqa: E402

import deepseek.data.bpe  # noqa: E402
from deepseek.data.bpe import BPETokenizer, load_bpe  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402


def test_the_digest_is_of_the_bytes_written(tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch,
                                            past_fifo: Callable[..., Any]) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    out, kept = tmp_path / "tokenizer.json", tmp_path / "written.json"
    real = deepseek.data.bpe.write_tokenizer
    made: list[BPETokenizer] = []

    class Recorded(BPETokenizer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    def write_then_replace(hf: Any, target: Any) -> Path:
        path = real(hf, target)
        path.rename(kept)  # what was written moves away, a FIFO takes its place
        os.mkfifo(path)
        return path

    monkeypatch.setattr(deepseek.data.bpe, "write_tokenizer", write_then_replace)
    monkeypatch.setattr(deepseek.data.bpe, "BPETokenizer", Recorded)
    said = past_fifo(out, lambda: ok(host, "tokenizer", "train", "--data", str(corpus), "--vocab-size", "300",
                                     "--out", str(out)))
    assert "vocabulary 300" in said
    identities = [t.identity for t in made]  # (load_bpe below makes a Recorded too)
    assert identities == [load_bpe(kept).identity]  # the identity of the bytes written
