"""The built-in encoders run where an engine cast their parameters alone to 16 bits (DeepSpeed's
bf16/fp16), in the options the contract suite's defaults do not reach: the waveform front ends
(computed in fp32, then on in the weights' type) and both of timm's attention paths in Swin's
shifted-window blocks (their float masks follow the weights' dtype). Found on an H100:
``deepseek launch -n 1 -- train --strategy deepspeed`` of examples/multimodal/digits.toml with
``precision.dtype = "bf16"`` stopped at the first shifted Swin block ("expected scalar type Float
but found BFloat16"); the CPU run of the same fails as well, in the product of the mask-added
scores and the values."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import deepseek

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from _sixteen_bit import AttentionDtypes, as_weights, params_only  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("options", [{"input": "waveform"}, {"input": "waveform", "front_end": "mel"}])
def test_audio_waveform_front_ends_with_16_bit_parameters(options: dict[str, Any], dtype: torch.dtype) -> None:
    enc = params_only(deepseek.create_encoder("audio.conv_transformer", **options).eval(), dtype)
    inputs, padding = enc.example_inputs(2)
    with torch.no_grad(), AttentionDtypes() as seen:
        out = enc(as_weights(inputs, dtype), padding)
    assert out.features.dtype == dtype
    assert torch.isfinite(out.features.float()).all()
    assert not seen.mismatched()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fused", [False, True])
def test_swin_shifted_windows_under_either_timm_attention_path(fused: bool, dtype: torch.dtype) -> None:
    """timm's Swin computes attention by hand unless its fused path is on (TIMM_FUSED_ATTN=2, or
    older timm releases such as the GPU image's)."""
    enc = params_only(deepseek.create_encoder("vision.swin").eval(), dtype)
    blocks = [b for stage in enc.swin.layers for b in stage.blocks]
    assert any(b.attn_mask is not None for b in blocks)  # the default has shifted-window blocks
    for b in blocks:
        b.attn.fused_attn = fused
    inputs, _ = enc.example_inputs(2)
    with torch.no_grad(), AttentionDtypes() as seen:
        out = enc(as_weights(inputs, dtype))
    assert out.features.dtype == dtype
    assert torch.isfinite(out.features.float()).all()
    assert len(seen.calls) == (len(blocks) if fused else 0)
    assert not seen.mismatched()
