"""Contract every registered modality encoder meets, whoever registered it (kind ``encoder``,
docs/multimodal.md section 2): created from its defaults with ``deepseek.create_encoder`` (an
``Encoder`` with a positive int ``output_dim``), it gives an example batch of its modality
(``Encoder.example_inputs``) that its own ``check_inputs`` accepts, and its output on that batch
keeps the output contract (``EncoderOutput``, features ``(B, T, output_dim)`` floating and finite,
padding mask ``(B, T)`` bool) with zero rows at padding; its features at real positions do not
change when the inputs at padded positions do, with the example's padding and with it moved to
the start of the rows (encoders that take no mask skip this check; one whose ``check_inputs``
refuses padding before real steps skips the second);
gradients reach every one of its parameters; with its parameters alone in bf16 (DeepSpeed's 16-bit
engine) it runs on its example batch and gives bf16 features, its attention masks in the queries'
dtype (:mod:`_sixteen_bit`).
Core registers ``text.transformer``, so the module runs in every environment (deepseek-enterprise
adds ``vision.swin`` and ``audio.conv_transformer``)."""

from __future__ import annotations

import pytest
import torch
from _gradients import check_every_parameter_trains
from _sixteen_bit import AttentionDtypes, as_weights, params_only

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


def _repadded(inputs: torch.Tensor, mask: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """``inputs`` with new random values at the positions ``mask`` marks as padding (the mask is
    ``(B, T)``, the leading dims of ``inputs``): integer inputs (token ids) drawn from the range
    the example already uses, so they stay within the encoder's vocabulary; floating inputs from a
    normal distribution three times as wide as the example's."""
    gen = torch.Generator().manual_seed(seed)
    if inputs.is_floating_point():
        scale = 3 * float(inputs.float().std()) or 1.0
        fresh = (torch.randn(inputs.shape, generator=gen) * scale).to(inputs.dtype)
    else:
        low, high = int(inputs.min()), int(inputs.max()) + 1
        fresh = torch.randint(low, max(high, low + 2), inputs.shape, generator=gen, dtype=inputs.dtype)
    padded = mask.view(*mask.shape, *([1] * (inputs.dim() - mask.dim())))
    return torch.where(padded, fresh.to(inputs.device), inputs)


def check_padding_does_not_leak(name: str, enc: torch.nn.Module, inputs: torch.Tensor, mask: torch.Tensor) -> None:
    """Asserts the rule of docs/multimodal.md section 2 that the features at real (unpadded)
    positions do not depend on the inputs at padded positions, on ``enc`` in eval mode: with the
    example's padding and again with it at the other end of the time axis (unless its
    ``check_inputs`` refuses padding there), so padding before a real position and padding after
    it must both stay out: a one-direction (causal) encoder that never masks fails."""
    assert mask.dtype == torch.bool and tuple(mask.shape) == tuple(inputs.shape[:mask.dim()]), (
        f"{name}: example_inputs gives a padding_mask of {mask.dtype} {tuple(mask.shape)}, not bool with the "
        f"inputs' leading dims {tuple(inputs.shape[:2])} (docs/multimodal.md section 2)")
    _check_one_padding(f"{name} (padding after real steps)", enc, inputs, _trailing(mask))
    leading = _leading(mask)
    # An encoder whose check_inputs refuses padding before real steps (it reads each row from its
    # start) is never given any, so nothing can leak from there.
    if enc.check_inputs(_repadded(inputs, leading), leading) is None:
        _check_one_padding(f"{name} (padding before real steps)", enc, inputs, leading)


def _trailing(mask: torch.Tensor) -> torch.Tensor:
    """The example's own ``mask``; one without padding gets the last sample's second half padded."""
    if mask.any():
        return mask
    mask = mask.clone()
    mask[-1, mask.size(1) // 2:] = True
    return mask


def _leading(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with its time axis reversed (padding at the end moves to the start), so an encoder
    that only looks one way (causal) still meets padding before real positions; one without
    padding gets the last sample's first half padded."""
    if mask.any():
        return mask.flip(1)
    mask = mask.clone()
    mask[-1, :mask.size(1) // 2] = True
    return mask


def _check_one_padding(name: str, enc: torch.nn.Module, inputs: torch.Tensor, mask: torch.Tensor) -> None:
    changed = _repadded(inputs, mask)
    assert enc.check_inputs(changed, mask) is None, f"{name}: its check_inputs refuses its example_inputs with new padding"
    with torch.no_grad():
        before, after = enc(inputs, mask), enc(changed, mask)
    assert torch.equal(before.padding_mask, after.padding_mask), (
        f"{name}: changing the inputs at padded positions changed the output padding_mask; derive it from the "
        "padding_mask given, docs/multimodal.md section 2")
    real = ~before.padding_mask
    diff = (before.features[real] - after.features[real]).abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    assert worst <= 1e-5, (
        f"{name}: changing the inputs at padded positions changed the features at real positions (by up to "
        f"{worst:.3g}); padding must not leak into them: mask padded keys out of attention and zero padded steps "
        "before convolutions and norms that mix positions, docs/multimodal.md section 2")


@pytest.mark.parametrize("comp", ENCODERS, ids=[c.qualified_name for c in ENCODERS])
def test_encoder_padding_does_not_leak(comp) -> None:  # noqa: ANN001
    enc, (inputs, mask) = _encoder(comp)
    if mask is None:
        pytest.skip(f"{comp.name}: example_inputs gives no padding_mask (an input without padding, such as an image)")
    check_padding_does_not_leak(comp.name, enc.eval(), inputs, mask)


@pytest.mark.parametrize("comp", ENCODERS, ids=[c.qualified_name for c in ENCODERS])
def test_encoder_trains(comp) -> None:  # noqa: ANN001
    enc, (inputs, mask) = _encoder(comp)
    enc.train()
    out = enc(inputs, mask)
    keep = (~out.padding_mask).unsqueeze(-1).to(out.features.dtype)
    (out.features * keep).square().mean().backward()
    check_every_parameter_trains(enc, where=f"encoder {comp.qualified_name}", source="the features of example_inputs()",
                                 doc="docs/multimodal.md section 2")


@pytest.mark.parametrize("comp", ENCODERS, ids=[c.qualified_name for c in ENCODERS])
def test_encoder_runs_with_its_parameters_alone_in_bf16(comp) -> None:  # noqa: ANN001
    enc, (inputs, mask) = _encoder(comp)
    enc = params_only(enc.eval(), torch.bfloat16)
    with torch.no_grad(), AttentionDtypes() as seen:
        out = enc(as_weights(inputs, torch.bfloat16), mask)
    assert out.features.dtype == torch.bfloat16, (
        f"{comp.name}: with its parameters in bf16 (DeepSpeed's bf16) its features are {out.features.dtype}; compute "
        "in the weights' dtype (docs/multimodal.md section 2)")
    assert torch.isfinite(out.features.float()).all(), f"{comp.name}: non-finite features with bf16 parameters"
    assert not seen.mismatched(), (
        f"{comp.name}: attention masks of another dtype than the queries' with bf16 parameters {seen.mismatched()}, "
        "which CUDA refuses; keep float buffers in the weights' dtype (docs/multimodal.md section 2)")


def test_attention_calls_are_recorded_however_their_arguments_are_passed() -> None:
    """The bf16 check records every attention call of an encoder of any distribution: one that
    passes the query by keyword (``query=q``) stopped it with an IndexError, not a finding."""
    q = torch.zeros(1, 2, 4, 8, dtype=torch.bfloat16)
    float_mask = torch.zeros(4, 4)
    with AttentionDtypes() as seen:
        torch.nn.functional.scaled_dot_product_attention(query=q, key=q, value=q, attn_mask=float_mask)
        torch.nn.functional.scaled_dot_product_attention(q, q, q, float_mask.bfloat16())
        torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=float_mask > 0)
    assert seen.calls == [(torch.bfloat16, torch.float32), (torch.bfloat16, torch.bfloat16),
                          (torch.bfloat16, torch.bool)]
    assert seen.mismatched() == [(torch.bfloat16, torch.float32)]


class _Causal(torch.nn.Module):
    """A one-direction encoder that never masks: each step's features are the running sum of the
    steps up to it (zeroed at padding), so padding after a real step cannot reach it."""

    def check_inputs(self, inputs: torch.Tensor, mask: torch.Tensor | None) -> None:  # noqa: ARG002
        return None

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None):  # noqa: ANN201
        from deepseek.models.encoder import EncoderOutput

        mask = torch.zeros(inputs.shape[:2], dtype=torch.bool) if mask is None else mask
        return EncoderOutput(inputs.cumsum(1) * (~mask).unsqueeze(-1), mask)


def test_a_causal_encoder_that_does_not_mask_padding_fails_the_leak_check() -> None:
    inputs = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[-1, 4:] = True  # padding at the end only: the running sum never sees it
    with pytest.raises(AssertionError, match=r"^causal \(padding before real steps\): changing the inputs at padded "
                                             r"positions changed the features at real positions"):
        check_padding_does_not_leak("causal", _Causal().eval(), inputs, mask)
