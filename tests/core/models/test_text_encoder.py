"""Bidirectional text encoder."""

from __future__ import annotations

import pytest
import torch

import deepseek
from deepseek.errors import ConfigError
from deepseek.models.encoder import TextTransformerEncoder


def test_shape_and_bidirectional() -> None:
    torch.manual_seed(0)
    enc = TextTransformerEncoder(d_model=32, n_heads=2, n_layers=2, max_seq_len=16).eval()
    tok = torch.randint(1, 256, (2, 10))
    out, mask = enc(tok)
    assert out.shape == (2, 10, 32) and mask.shape == (2, 10) and not mask.any()
    changed = tok.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 256
    # Unlike the decoder, a change at the last position reaches the first one.
    assert (enc(changed).features[:, 0] - out[:, 0]).abs().max() > 1e-4


def test_padding_is_ignored_and_zeroed() -> None:
    torch.manual_seed(0)
    enc = TextTransformerEncoder(d_model=32, n_heads=2, n_layers=2, max_seq_len=16).eval()
    tok = torch.randint(1, 256, (1, 6))
    padded = torch.cat([tok, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = padded == 0
    out, out_mask = enc(padded, padding_mask=mask)
    assert torch.equal(out_mask, mask)
    torch.testing.assert_close(out[:, :6], enc(tok).features, rtol=1e-5, atol=1e-5)
    assert out[:, 6:].abs().max() == 0
    all_pad = enc(torch.zeros(1, 4, dtype=torch.long), padding_mask=torch.ones(1, 4, dtype=torch.bool)).features
    assert torch.isfinite(all_pad).all() and all_pad.abs().max() == 0


def test_registered_as_text_transformer() -> None:
    enc = deepseek.create_encoder("text.transformer", d_model=32, n_heads=2, n_layers=1)
    assert isinstance(enc, TextTransformerEncoder) and enc.output_dim == 32


def test_bad_options_name_the_encoder_field() -> None:
    with pytest.raises(ConfigError, match=r"encoder\.text\.transformer\.n_heads"):
        TextTransformerEncoder(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match=r"^encoder\.text\.transformer\.d_modl: unknown key \(did you mean 'd_model'\?\)"):
        deepseek.create_encoder("text.transformer", d_modl=3)
