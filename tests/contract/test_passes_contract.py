"""Contract every registered graph pass meets, whoever registered it (timm's test_models idea):
it loads, is a GraphPass with a name and a description, and on the graph the optimizer captures,
in both forms (see deepseek.graph.capture), either does not apply or keeps the numbers within
the pass's own tolerance, without touching the model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek.graph.capture import capture
from deepseek.graph.passes import FP32_TOLERANCE, GraphPass, max_rel_error

PASSES = deepseek.list_passes()


class Reference(nn.Module):
    """A little of everything the built-in passes look for: consecutive Linear layers, BatchNorm
    after Linear, sibling Q/K/V projections, hand-written attention, dropout, identity, constant
    sub-graphs and a position table."""

    def __init__(self, d: int = 16, heads: int = 2, t: int = 6) -> None:
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.inp = nn.Linear(d, d)
        self.bn = nn.BatchNorm1d(d)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.a, self.b = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.drop, self.ident = nn.Dropout(0.1), nn.Identity()
        self.pos = nn.Embedding(t, d)
        self.scale = nn.Parameter(torch.rand(d) + 0.5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.bn(self.inp(x.reshape(b * t, d))).reshape(b, t, d) + self.pos(torch.arange(t))
        q, k, v = (z.view(b, t, self.heads, self.hd).transpose(1, 2) for z in (self.q(h), self.k(h), self.v(h)))
        att = F.softmax((q @ k.transpose(-2, -1)) / math.sqrt(self.hd), dim=-1)
        y = self.drop(att @ v).transpose(1, 2).reshape(b, t, d)
        y = self.b(self.a(self.ident(y))) * (self.scale * 2).sigmoid()
        return y.to(torch.float32).contiguous()


class ShapeChecked(Reference):
    """The same model with Python control flow on a shape: symbolic tracing fails on it, so the
    optimizer captures it with torch.export (the aten form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < 1:
            raise ValueError("empty batch")
        return super().forward(x)


FORMS = {"module-form": (Reference, "fx.symbolic_trace"), "aten-form": (ShapeChecked, "torch.export")}


def test_core_passes_registered() -> None:
    expected = {"drop-dropout", "fold-batchnorm", "fuse-linear", "merge-siblings", "attention-sdpa",
                "const-fold", "inductor", "bf16", "int8-dynamic"}
    assert expected <= set(PASSES)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", PASSES)
def test_pass_contract(name: str, form: str) -> None:
    gp = deepseek.create_pass(name)
    assert isinstance(gp, GraphPass), f"{name} created {type(gp).__name__}, not a GraphPass"
    assert gp.name == name.split(":")[-1]
    assert isinstance(gp.description, str) and gp.description.strip()
    assert gp.tolerance is None or 0 < gp.tolerance < 1

    torch.manual_seed(0)
    model_type, method = FORMS[form]
    model = model_type().eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        expected = model(x)
        gm, captured = capture(model, (x,))
        assert captured == method
        out, report = gp.run(gm, (x,))
        assert report.name == gp.name
        if out is None:
            assert report.status == "no-op"
            return
        assert report.status == "applied" and report.changes
        err = max_rel_error(out(x), expected)
    assert err <= (gp.tolerance or FP32_TOLERANCE), f"{name}: max relative error {err:.3g}"
    with torch.no_grad():
        assert torch.equal(model(x), expected), f"{name} modified the original model"
