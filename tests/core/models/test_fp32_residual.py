"""``GPT.set_fp32_residual`` (``precision.fp32_residual``): the residual stream's dtype under
autocast, in the whole model and in the first pipeline stage."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import deepseek
from deepseek.models import GPT, GPTConfig

CFG = GPTConfig(d_model=64, n_heads=4, n_layers=3, max_seq_len=32)

# bf16 keeps 8 significant bits: unit roundoff 2**-8, machine epsilon 2**-7. Measured on the tiny
# preset (4 x 64 tokens): the loss moves by ~2e-5 relative, the logits by ~7e-3 (relative norm).
LOSS_RTOL = 2.0**-8
LOGITS_RTOL = 4 * 2.0**-7


def _model(fp32_residual: bool = True, cfg: GPTConfig = CFG) -> GPT:
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    model.set_fp32_residual(fp32_residual)
    return model


def _tokens(rows: int = 2, t: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (rows, t), generator=torch.Generator().manual_seed(seed))


def _input_dtypes(module: nn.Module, blocks: list[nn.Module], idx: torch.Tensor, autocast: bool) -> list[torch.dtype]:
    """The dtype of the hidden states entering each of ``blocks`` during ``module(idx)``."""
    seen: list[torch.dtype] = []
    handles = [b.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype)) for b in blocks]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            module(idx)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("fp32_residual,expected", [(True, torch.float32), (False, torch.bfloat16)])
def test_residual_dtype_under_bf16_autocast(fp32_residual: bool, expected: torch.dtype) -> None:
    model = _model(fp32_residual)
    assert model.fp32_residual is fp32_residual
    # Every block sees it, not only the first: the stream stays in that dtype throughout.
    assert _input_dtypes(model, list(model.blocks), _tokens(), autocast=True) == [expected] * CFG.n_layers


def test_default_is_fp32_residual() -> None:
    assert GPT(CFG).fp32_residual is True


def test_no_effect_without_autocast() -> None:
    idx = _tokens()
    plain, bf16_residual = _model(True), _model(False)
    assert _input_dtypes(bf16_residual, list(bf16_residual.blocks), idx, autocast=False) == [torch.float32] * 3
    torch.testing.assert_close(bf16_residual(idx), plain(idx), rtol=0, atol=0)


def test_loss_and_logits_close_to_fp32_residual_but_not_identical() -> None:
    torch.manual_seed(0)
    model = deepseek.create_model("tiny").eval()
    g = torch.Generator().manual_seed(0)
    idx, targets = torch.randint(0, 256, (4, 64), generator=g), torch.randint(0, 256, (4, 64), generator=g)
    results = {}
    for fp32_residual in (True, False):
        model.set_fp32_residual(fp32_residual)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            results[fp32_residual] = (model(idx, targets).float(), model(idx).float())
    (loss32, logits32), (loss16, logits16) = results[True], results[False]
    assert float(loss16) == pytest.approx(float(loss32), rel=LOSS_RTOL)
    assert float((logits16 - logits32).norm() / logits32.norm()) < LOGITS_RTOL
    assert not torch.equal(logits16, logits32)  # the cast did happen


@pytest.mark.parametrize("fp32_residual,expected", [(True, torch.float32), (False, torch.bfloat16)])
def test_first_pipeline_stage_casts_like_the_model(fp32_residual: bool, expected: torch.dtype) -> None:
    model = _model(fp32_residual)
    first, last = model.split_stages(2)
    assert first.fp32_residual is fp32_residual
    assert _input_dtypes(first, list(first.blocks.values()), _tokens(), autocast=True) == [expected] * len(first.blocks)
    idx = _tokens()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = first(idx)
        assert hidden.dtype == expected
        # The same operations in the same order as the unsplit model.
        torch.testing.assert_close(last(hidden), model(idx), rtol=0, atol=0)
