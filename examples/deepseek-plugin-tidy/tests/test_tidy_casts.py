"""tidy.drop-noop-casts: removes exactly the conversions that change nothing; numbers identical."""

from __future__ import annotations

import pytest
import torch
from deepseek.graph.capture import capture
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from deepseek_tidy.casts import DropNoopCasts, cast_method


class Casty(nn.Module):
    """Three no-op conversions and five real ones."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.lin(x.float())  # no-op on float32 input
        a = a.to(torch.float32).contiguous()  # two no-ops
        t = a.transpose(0, 1).contiguous()  # real: transposed is not contiguous
        d = a.to(torch.float64)  # real: dtype change
        h = a.half().float()  # real, real
        return t.sum() + d.sum().float() + h.sum()


def _casts(gm: fx.GraphModule) -> list[str]:
    return [m for n in gm.graph.nodes if (m := cast_method(n))]


def test_removes_noops_found_by_running_the_example_and_keeps_numbers() -> None:
    torch.manual_seed(0)
    model = Casty().eval()
    x = torch.randn(4, 6)
    expected = model(x)
    gm, method = capture(model, (x,))  # the graph deepseek.optimize hands the pass
    assert method == "fx.symbolic_trace"
    assert _casts(gm) == ["float", "to", "contiguous", "contiguous", "to", "half", "float", "float"]
    out, report = DropNoopCasts().run(gm, (x,))
    assert report.status == "applied"
    assert report.changes == ["removed 3 no-op conversion(s): contiguous x1, float x1, to x1"]
    assert _casts(out) == ["contiguous", "to", "half", "float", "float"]
    assert torch.equal(out(x), expected)


class ShapeCheckedCasty(Casty):
    """Python control flow on a shape: the optimizer captures it with torch.export (aten form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < 1:
            raise ValueError("empty batch")
        return super().forward(x)


def test_removes_noops_in_the_aten_form_too() -> None:
    torch.manual_seed(0)
    model = ShapeCheckedCasty().eval()
    x = torch.randn(4, 6)
    expected = model(x)
    gm, method = capture(model, (x,))
    assert method == "torch.export"
    # export already dropped the no-op contiguous(); x.float() and .to(float32) are aten.to calls
    assert _casts(gm) == ["to", "to", "contiguous", "to", "to", "to", "to"]
    out, report = DropNoopCasts().run(gm, (x,))
    assert report.changes == ["removed 2 no-op conversion(s): to x2"]
    assert _casts(out) == ["contiguous", "to", "to", "to", "to"]
    assert torch.equal(out(x), expected)


def test_int_input_keeps_its_float_conversion() -> None:
    model = Casty().eval()
    x = torch.arange(24).reshape(4, 6)  # int64: x.float() is a real conversion
    gm = fx.symbolic_trace(model)
    expected = model(x)
    out, _ = DropNoopCasts().run(gm, (x,))
    assert _casts(out)[0] == "float"
    assert torch.equal(out(x), expected)


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.double().double().to(torch.float64)  # first real (unknown x), two no-ops
        return y * self.w.float() + x.to(copy=True).double()  # w is float32: no-op; copy=True kept


def test_static_facts_without_example_inputs() -> None:
    model = Chain().eval()
    gm = fx.symbolic_trace(model)
    x = torch.randn(2, 3)
    expected = model(x)
    out, report = DropNoopCasts().run(gm, ())
    assert report.status == "applied"
    assert _casts(out) == ["double", "to", "double"]
    assert torch.equal(out(x), expected)


def _tensor_meta(t: torch.Tensor) -> TensorMetadata:
    fmt = torch.contiguous_format if t.is_contiguous() else None
    return TensorMetadata(t.shape, t.dtype, t.requires_grad, t.stride(), fmt, False, {})


class _Annotate(fx.Interpreter):
    """Store each node's value as ``meta["val"]`` (as export does) or ``meta["tensor_meta"]``
    (as ShapeProp does), without the cost of fake-tensor tracing."""

    def __init__(self, gm: fx.GraphModule, key: str) -> None:
        super().__init__(gm)
        self.key = key

    def run_node(self, n: fx.Node) -> object:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta[self.key] = result if self.key == "val" else _tensor_meta(result)
        return result


class Transposes(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous() + x.t().contiguous().t().to("cpu")


@pytest.mark.parametrize("key", ["val", "tensor_meta"])
def test_graph_metadata_decides_without_example_inputs(key: str) -> None:
    gm = fx.symbolic_trace(Transposes())
    x = torch.randn(3, 4)
    _Annotate(gm, key).run(x)
    out, _ = DropNoopCasts().run(gm, ())
    # the transposed contiguous() stays; .to("cpu") needs a device, which tensor_meta lacks
    assert _casts(out) == (["contiguous"] if key == "val" else ["contiguous", "to"])
    assert torch.equal(out(x), Transposes()(x))


def test_no_conversions_is_a_no_op() -> None:
    gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    out, report = DropNoopCasts().run(gm, (torch.randn(1, 2),))
    assert out is None and report.status == "no-op"


def test_copy_and_memory_format_are_never_dropped() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.to(torch.float32, copy=True) + x.contiguous(memory_format=torch.channels_last)

    gm = fx.symbolic_trace(M())
    x = torch.randn(1, 2, 3, 3)
    out, report = DropNoopCasts().run(gm, (x,))
    # channels_last on a (1, 2, 3, 3) contiguous tensor returns a new tensor: observed, kept.
    assert report.status == "no-op" and out is None
