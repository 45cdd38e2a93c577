"""Contract every registered model builder and text encoder meets (timm's test_models idea).

Model builders are called as ``create_model(name, device="meta")`` (free, any size) and with
``SHRINK`` overrides (a small model of the same family) for the numerical checks.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import deepseek

SHRINK = {"d_model": 64, "n_heads": 4, "n_layers": 2, "max_seq_len": 32}
MODELS = deepseek.list_models()
TEXT_ENCODERS = deepseek.list_encoders("text.*")


def test_core_models_registered() -> None:
    assert {"tiny", "small", "1.3b"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_builds_on_meta_device(name: str) -> None:
    model = deepseek.create_model(name, device="meta")
    assert isinstance(model, nn.Module)
    params = list(model.parameters())
    assert params and all(p.is_meta for p in params)
    unique = {id(p): p.numel() for p in params}
    assert model.num_parameters() == sum(unique.values())
    assert model.flops_per_token(model.config.max_seq_len) > 6 * model.num_parameters(non_embedding=True)


@pytest.mark.parametrize("name", MODELS)
def test_logits_loss_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = deepseek.create_model(name, **SHRINK)
    vocab = model.config.vocab_size
    idx = torch.randint(0, vocab, (2, 32))
    targets = torch.randint(0, vocab, (2, 32))
    assert model(idx).shape == (2, 32, vocab)
    loss = model(idx, targets)
    assert loss.dim() == 0 and abs(loss.item() - math.log(vocab)) < 0.5
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_pipeline_stages_compose(name: str) -> None:
    model = deepseek.create_model(name, **SHRINK).eval()
    idx = torch.randint(0, model.config.vocab_size, (1, 16))
    h = idx
    for stage in model.split_stages(2):
        h = stage(h)
    torch.testing.assert_close(h, model(idx))


@pytest.mark.parametrize("name", MODELS)
def test_generate_with_cache(name: str) -> None:
    model = deepseek.create_model(name, **SHRINK)
    out = model.generate(torch.zeros(1, 3, dtype=torch.long), 5, temperature=0)
    assert out.shape == (1, 8)


@pytest.mark.parametrize("name", TEXT_ENCODERS)
def test_text_encoder_contract(name: str) -> None:
    torch.manual_seed(0)
    enc = deepseek.create_encoder(name).eval()
    tokens = torch.randint(1, 256, (2, 12))
    out = enc(tokens)
    assert out.dim() == 3 and out.shape[:2] == (2, 12) and torch.isfinite(out).all()
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 8:] = True
    masked = enc(tokens, padding_mask=mask)
    assert masked.shape == out.shape and torch.isfinite(masked).all()
    torch.testing.assert_close(masked[0], out[0])
