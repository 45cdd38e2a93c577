"""deepseek.training.clip: global-norm clipping, separate or fused into AdamW's kernel."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepseek.training import clip
from deepseek.training.mixed_precision import Precision


def _model_with_grads(scale: float) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
    x = torch.randn(8, 16)
    (model(x).pow(2).sum() * scale).backward()
    return model


@pytest.mark.parametrize("scale", [1e-3, 1e3])  # below and above max_norm
def test_norm_and_scaling_match_torch_clip_grad_norm(scale: float) -> None:
    ours, ref = _model_with_grads(scale), _model_with_grads(scale)
    norm = clip.clip_gradients(ours.parameters(), 1.0)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    assert isinstance(norm, torch.Tensor) and norm.dim() == 0
    torch.testing.assert_close(norm, ref_norm)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    total = torch.nn.utils.get_total_norm([p.grad for p in ours.parameters()])
    assert float(total) == pytest.approx(min(float(ref_norm), 1.0), rel=1e-5)


def test_max_norm_zero_only_measures() -> None:
    model = _model_with_grads(1e3)
    before = [p.grad.clone() for p in model.parameters()]
    norm = clip.clip_gradients(model.parameters(), 0.0)
    assert float(norm) > 1.0
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters(), strict=True))


def test_no_gradients_gives_zero() -> None:
    assert float(clip.clip_gradients(nn.Linear(2, 2).parameters(), 1.0)) == 0.0


def _clone(model: nn.Module) -> nn.Module:
    """deepcopy drops ``.grad``; copy it too."""
    twin = copy.deepcopy(model)
    for a, b in zip(twin.parameters(), model.parameters(), strict=True):
        a.grad = b.grad.clone()
    return twin


def _adamw(model: nn.Module, fused: bool) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=fused or None)


def test_fused_adamw_applies_the_clip_inside_its_step() -> None:
    """Deferred scaling (grad_scale in the fused kernel) gives the same update as clipping first."""
    base = _model_with_grads(1e3)
    fused_model, plain_model = _clone(base), _clone(base)
    fused_opt, plain_opt = _adamw(fused_model, True), _adamw(plain_model, False)
    assert clip.fusable(fused_opt) and not clip.fusable(plain_opt)
    precision = Precision("fp32").bind(torch.device("cpu"))
    n1 = clip.clip_gradients(fused_model.parameters(), 1.0, optimizer=fused_opt)
    assert "grad_scale" in fused_opt.__dict__  # deferred, not applied yet
    n2 = clip.clip_gradients(plain_model.parameters(), 1.0, optimizer=plain_opt)
    torch.testing.assert_close(n1, n2)
    assert precision.step(fused_opt) and precision.step(plain_opt)
    assert "grad_scale" not in fused_opt.__dict__  # released after the step
    for a, b in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(fused_model.parameters(), base.parameters(), strict=True))
    assert moved > 1e-3  # the step did update the weights


def test_unclipped_fused_step_matches_torch_without_grad_scale() -> None:
    base = _model_with_grads(1e-3)  # norm below max_norm: coefficient 1
    a, b = _clone(base), _clone(base)
    oa, ob = _adamw(a, True), _adamw(b, True)
    clip.clip_gradients(a.parameters(), 1.0, optimizer=oa)
    oa.step()
    clip.release(oa)
    ob.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
