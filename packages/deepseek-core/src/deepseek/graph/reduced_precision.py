"""Opt-in reduced-precision paths: bf16 everywhere, and int8 dynamic quantization of Linear.

Both change the numbers, so each states its own tolerance (checked against fp32 eager like any
pass) and the optimizer reports the measured max relative error and the top-1 agreement of the
logits (the fraction of positions whose argmax is unchanged).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from deepseek.graph.match import match_linear
from deepseek.graph.passes import GraphPass, add_module, finish, replace_node

BF16_TOLERANCE = 5e-2
"""Max relative error accepted for the bf16 path (8-bit mantissa, errors grow with depth)."""

INT8_TOLERANCE = 1e-1
"""Max relative error accepted for int8 dynamic quantization of Linear layers."""


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 instructions that oneDNN uses (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cast_io(gm: fx.GraphModule, dtype: torch.dtype) -> None:
    """Cast floating-point inputs to ``dtype`` on entry and floating outputs back on exit."""
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for ph in placeholders:
        users = list(ph.users)
        with graph.inserting_after(placeholders[-1]):
            cast = graph.call_function(_to_dtype_if_float, (ph, dtype))
        for user in users:
            user.replace_input_with(ph, cast)
    output = next(n for n in graph.nodes if n.op == "output")
    with graph.inserting_before(output):
        restored = graph.call_function(_restore_float, (output.args[0],))
    output.args = (restored,)


def _to_dtype_if_float(x: Any, dtype: torch.dtype) -> Any:
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(dtype)
    return x


def _restore_float(out: Any) -> Any:
    return torch.utils._pytree.tree_map(
        lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t, out
    )


class BFloat16(GraphPass):
    """Run the whole graph in bf16 (weights converted once); inputs and outputs stay fp32."""

    name = "bf16"
    description = "opt-in: run in bfloat16 (CPUs with AVX512-BF16/AMX, or GPU); outputs stay fp32"
    tolerance = BF16_TOLERANCE

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        device = next((x.device for x in example_inputs if isinstance(x, torch.Tensor)), torch.device("cpu"))
        if device.type == "cpu" and not cpu_supports_bf16():
            self.record("skipped: this CPU has no native bf16 support")
            return None
        new = copy.deepcopy(gm).to(torch.bfloat16)
        _cast_io(new, torch.bfloat16)
        # The aten form asserts the fp32 dtypes it was traced with; bf16 changes them on purpose.
        for node in list(new.graph.nodes):
            if node.op == "call_function" and node.target is torch.ops.aten._assert_tensor_metadata.default:
                new.graph.erase_node(node)
        params = sum(p.numel() for p in new.parameters())
        self.record(f"converted {params:,} parameters to bf16; fp32 inputs/outputs cast at the edges")
        return finish(new)


def _int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # On CUDA, torch._int_mm wants more than 16 rows; pad small batches there.
    rows = a.shape[0]
    if a.is_cuda and rows <= 16:
        a = torch.nn.functional.pad(a, (0, 0, 0, 17 - rows))
        return torch._int_mm(a, b)[:rows]
    return torch._int_mm(a, b)


@torch.library.custom_op("deepseek::int8_linear", mutates_args=())
def int8_linear(
    x: torch.Tensor, weight_t: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x W^T + b`` with ``W`` stored as int8 ``weight_t`` (``(in, out)``, per-output-channel
    ``weight_scale``) and ``x`` quantized to int8 per row at run time (symmetric)."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1]).float()
    x_scale = x2.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    xq = torch.round(x2 / x_scale).clamp(-127, 127).to(torch.int8)
    y = _int_mm(xq, weight_t).float() * x_scale * weight_scale
    if bias is not None:
        y = y + bias
    return y.to(x.dtype).reshape(*shape[:-1], weight_t.shape[1])


@int8_linear.register_fake
def _(x: torch.Tensor, weight_t: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight_t.shape[1])


class Int8DynamicLinear(nn.Module):
    """A Linear layer with int8 weights (per output channel) and int8 activations quantized per
    row at run time; one opaque op (``deepseek::int8_linear``) so compilers call it as is."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        with torch.no_grad():
            w = weight.detach().float()
            scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_t", q.t().contiguous())  # (in, out) for torch._int_mm
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.out_features, self.in_features = weight.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Quantize ``x`` per row, multiply in int8 with int32 accumulation, rescale."""
        return torch.ops.deepseek.int8_linear(x, self.weight_t, self.weight_scale, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


class Int8Dynamic(GraphPass):
    """Replace every fp32 Linear layer (any captured form) with int8 weights and dynamically
    quantized activations."""

    name = "int8-dynamic"
    description = "opt-in: int8 dynamic quantization of Linear layers (int8 weights and activations)"
    tolerance = INT8_TOLERANCE

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        replaced = 0
        for node in list(gm.graph.nodes):
            lv = match_linear(gm, node)
            if lv is None or lv.weight.dtype != torch.float32:
                continue
            label = str(node.target) if node.op == "call_module" else node.name
            target = add_module(gm, f"{label}_int8", Int8DynamicLinear(lv.weight, lv.bias))
            replace_node(gm, node, target, (lv.input,))
            replaced += 1
        if not replaced:
            return None
        self.record(f"quantized {replaced} Linear layer(s) to int8 (per-channel weights, per-row activations)")
        return finish(gm)


__all__ = ["BF16_TOLERANCE", "INT8_TOLERANCE", "BFloat16", "Int8Dynamic", "Int8DynamicLinear", "cpu_supports_bf16"]
