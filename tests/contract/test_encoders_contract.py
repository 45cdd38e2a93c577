"""Contract every registered modality encoder meets, whoever registered it (kind ``encoder``,
docs/multimodal.md section 2): created from its defaults with ``deepseek.create_encoder`` (an
``Encoder`` with a positive int ``output_dim``), it gives an example batch of its modality
(``Encoder.example_inputs``) that its own ``check_inputs`` accepts, and its output on that batch
keeps the output contract (``EncoderOutput``, features ``(B, T, output_dim)`` floating and finite,
padding mask ``(B, T)`` bool) with zero rows at padding; gradients reach its parameters.
Core registers ``text.transformer``, so the module runs in every environment (deepseek-enterprise
adds ``vision.swin`` and ``audio.conv_transformer``)."""

from __future__ import annotations

import pytest
import torch

import deepseek
from deepseek.models.encoder import check_output
from deepseek.plugins.host import get_host

HOST = get_host()
ENCODERS = HOST.components("encoder")


def _encoder(comp):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    enc = deepseek.create_encoder(comp.qualified_name)  # checks the Encoder type and output_dim
    example = enc.example_inputs(2)
    assert example is not None, (
        f"encoder {comp.name} ({comp.dist}) gives no example_inputs(); override Encoder.example_inputs to return "
        "a batch of its modality (docs/multimodal.md section 2)")
    return enc, example


@pytest.mark.parametrize("comp", ENCODERS, ids=[c.qualified_name for c in ENCODERS])
def test_encoder_output_keeps_the_contract(comp) -> None:  # noqa: ANN001
    enc, (inputs, mask) = _encoder(comp)
    enc.eval()
    assert enc.check_inputs(inputs, mask) is None, f"{comp.name}: its own check_inputs refuses its example_inputs"
    with torch.no_grad():
        out = check_output(enc, enc(inputs, mask), inputs, f"encoder {comp.qualified_name}")
        bare = check_output(enc, enc(inputs), inputs, f"encoder {comp.qualified_name}")
    assert torch.isfinite(out.features).all(), f"{comp.name}: non-finite features on its example_inputs"
    assert torch.isfinite(bare.features).all(), f"{comp.name}: non-finite features without a padding_mask"
    assert not bare.padding_mask.any(), f"{comp.name}: no padding_mask given, yet its output marks padding"
    # Rows at padding are zero (fusion methods pool over the rest).
    assert out.features[out.padding_mask].abs().sum() == 0, (
        f"{comp.name}: features at padding positions are not zero; zero them (features * ~padding_mask), "
        "docs/multimodal.md section 2")


@pytest.mark.parametrize("comp", ENCODERS, ids=[c.qualified_name for c in ENCODERS])
def test_encoder_trains(comp) -> None:  # noqa: ANN001
    enc, (inputs, mask) = _encoder(comp)
    enc.train()
    out = enc(inputs, mask)
    keep = (~out.padding_mask).unsqueeze(-1).to(out.features.dtype)
    (out.features * keep).square().mean().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
