"""Byte tokenizer."""

from __future__ import annotations

import pytest
import torch

from deepseek.data import SEPARATOR, ByteTokenizer


def test_round_trip_unicode() -> None:
    tok = ByteTokenizer()
    text = "def f(x):\n    return 'héllo 世界 🙂'\n"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text
    assert tok.vocab_size == 256 and SEPARATOR not in ids


def test_invalid_utf8_is_replaced_not_raised() -> None:
    tok = ByteTokenizer()
    ids = tok.encode("é")[:1] + tok.encode("ok")
    assert tok.decode(ids) == "\ufffdok"


def test_out_of_range_ids_rejected() -> None:
    with pytest.raises(ValueError, match="0..255"):
        ByteTokenizer().decode([300])
