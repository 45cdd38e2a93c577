"""The matching helpers recognise each pattern in every form the capture produces, and nothing else."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from deepseek.graph.capture import capture
from deepseek.graph.match import match_activation, match_add, match_attention, match_linear


class ShapeChecked(nn.Module):
    """Wraps a model with Python control flow on a shape, which symbolic tracing cannot follow:
    the capture falls back to torch.export (the aten form)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if args[0].shape[0] < 1:
            raise ValueError("empty batch")
        return self.inner(*args)


def captured(model: nn.Module, *inputs: torch.Tensor, form: str) -> fx.GraphModule:
    """``model`` captured in ``form`` (``module`` or ``aten``), as the optimizer captures it."""
    gm, method = capture(ShapeChecked(model).eval() if form == "aten" else model.eval(), inputs)
    assert method == {"module": "fx.symbolic_trace", "aten": "torch.export"}[form]
    return gm


FORMS = ["module", "aten"]


class Linears(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.w = nn.Parameter(torch.randn(5, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)  # a module
        y = F.linear(h, self.w)  # a function on a parameter, no bias
        return F.linear(y, y[:, :5])  # a computed weight: not a layer


@pytest.mark.parametrize("form", FORMS)
def test_match_linear(form: str) -> None:
    model = Linears()
    gm = captured(model, torch.randn(5, 4), form=form)
    views = [v for n in gm.graph.nodes if (v := match_linear(gm, n)) is not None]
    assert len(views) == 2
    a, w = views
    assert a.weight is model.a.weight and a.bias is model.a.bias
    assert w.weight is model.w and w.bias is None and w.bias_attr is None
    prefix = "" if form == "module" else "inner."
    assert (a.weight_attr, a.bias_attr, w.weight_attr) == (f"{prefix}a.weight", f"{prefix}a.bias", f"{prefix}w")
    assert w.input is a.node


class Adds(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = x + y
        t = torch.add(s, x)
        u = t.add(y)
        return torch.add(u, x, alpha=2)  # scaled: not a plain add


@pytest.mark.parametrize("form", FORMS)
def test_match_add(form: str) -> None:
    x, y = torch.randn(2, 3), torch.randn(2, 3)
    gm = captured(Adds(), x, y, form=form)
    views = [v for n in gm.graph.nodes if (v := match_add(n)) is not None]
    assert len(views) == 3
    s, t, u = views
    assert [n.op for n in (s.left, s.right)] == ["placeholder", "placeholder"]
    assert t.left is s.node and u.left is t.node
    assert t.other(s.node) is t.right and t.other(u.node) is None


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        scaled = F.scaled_dot_product_attention(q, k, v, None, 0.0, False, scale=0.5)
        return causal + scaled


@pytest.mark.parametrize("form", FORMS)
def test_match_attention(form: str) -> None:
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    gm = captured(Attention(), q, k, v, form=form)
    views = [v for n in gm.graph.nodes if (v := match_attention(n)) is not None]
    assert len(views) == 2
    causal, scaled = views
    assert [n.op for n in (causal.query, causal.key, causal.value)] == ["placeholder"] * 3
    assert (causal.is_causal, causal.scale, causal.attn_mask, causal.dropout_p) == (True, None, None, 0.0)
    assert (scaled.is_causal, scaled.scale) == (False, 0.5)


class Activations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gelu = nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.gelu(x) + F.gelu(x) + F.relu(x) + x.relu() + F.silu(x)
        return a + torch.tanh(x)  # not one of the three


@pytest.mark.parametrize("form", FORMS)
def test_match_activation(form: str) -> None:
    gm = captured(Activations(), torch.randn(2, 3), form=form)
    views = [v for n in gm.graph.nodes if (v := match_activation(gm, n)) is not None]
    assert [(v.kind, v.approximate) for v in views] == [
        ("gelu", "tanh"), ("gelu", "none"), ("relu", ""), ("relu", ""), ("silu", "")
    ]
    assert all(v.input.op == "placeholder" for v in views)
