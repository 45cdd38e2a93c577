"""Precision (fp32 / bf16 autocast / fp16 loss scaling on CPU) and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from deepseek.errors import ConfigError
from deepseek.training.mixed_precision import Precision
from deepseek.training.schedule import WarmupCosine


def _linear() -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    return layer, torch.optim.SGD(layer.parameters(), lr=0.1)


def test_bf16_autocast_on_cpu() -> None:
    p = Precision("bf16").bind("cpu")
    layer, _ = _linear()
    with p.autocast():
        out = layer(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # master weights stay fp32
    assert p.scaler is None


def test_fp32_is_plain() -> None:
    p = Precision("fp32").bind("cpu")
    layer, _ = _linear()
    with p.autocast():
        assert layer(torch.randn(2, 8)).dtype == torch.float32


def test_auto_is_fp32_on_cpu() -> None:
    assert Precision("auto").bind("cpu").name == "fp32"


def test_unknown_precision_names_allowed_values() -> None:
    with pytest.raises(ConfigError, match="allowed values: auto, fp32, bf16, fp16"):
        Precision("fp8")


def test_fp16_scaler_skips_the_step_on_inf_and_backs_off() -> None:
    p = Precision("fp16", init_scale=1024.0).bind("cpu")
    layer, opt = _linear()
    with p.autocast():
        out = layer(torch.randn(4, 8))
    assert out.dtype == torch.float16
    p.backward(out.float().pow(2).mean())
    layer.weight.grad[0, 0] = float("inf")  # what an fp16 overflow in backward leaves behind
    before = layer.weight.detach().clone()
    assert p.step(opt) is False
    assert p.last_step_skipped
    assert torch.equal(layer.weight, before)  # parameters untouched
    assert p.loss_scale == 512.0

    opt.zero_grad()
    with p.autocast():
        loss = layer(torch.randn(4, 8)).float().pow(2).mean()
    p.backward(loss)
    scaled = layer.weight.grad.clone()
    p.unscale_(opt)  # before clipping: gradients in true units
    torch.testing.assert_close(layer.weight.grad * 512.0, scaled)
    assert p.step(opt) is True
    assert not torch.equal(layer.weight, before)
    assert p.state_dict()["scaler"]["scale"] == 512.0


def test_fp16_scaler_state_round_trip() -> None:
    p = Precision("fp16", init_scale=64.0).bind("cpu")
    q = Precision("fp16").bind("cpu")
    q.load_state_dict(p.state_dict())
    assert q.loss_scale == 64.0


def test_warmup_then_cosine_to_floor() -> None:
    s = WarmupCosine(lr=1.0, min_lr=0.1, warmup_steps=4, decay_steps=14)
    assert [s(i) for i in (1, 2, 4)] == [0.25, 0.5, 1.0]
    assert s(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s(14) == pytest.approx(0.1) and s(100) == pytest.approx(0.1)
    values = [s(i) for i in range(4, 15)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_no_warmup() -> None:
    s = WarmupCosine(lr=1.0, min_lr=0.0, warmup_steps=0, decay_steps=10)
    assert s(0) == pytest.approx(1.0) and s(10) == 0.0


def test_use_scaler_replaces_the_fp16_scaler_only() -> None:
    p = Precision("fp16").bind("cpu")
    mine = torch.amp.GradScaler("cpu", init_scale=8.0)
    p.use_scaler(mine)
    assert p.scaler is mine and p.loss_scale == 8.0
    with pytest.raises(ValueError, match="precision 'bf16' uses no loss scaler; only fp16 does"):
        Precision("bf16").bind("cpu").use_scaler(mine)
