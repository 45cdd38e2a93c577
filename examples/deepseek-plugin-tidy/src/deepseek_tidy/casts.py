"""``tidy.drop-noop-casts``: remove tensor conversions that change nothing.

``x.to(torch.float32)`` on a float32 tensor, ``x.contiguous()`` on a contiguous one,
``x.float()``, ``x.type(torch.float32)``, ``x.cpu()``... return ``x`` itself when there is
nothing to convert, so replacing the call by its input is exact (same object, same numbers).
The pass works on both forms of graph the optimizer captures (``deepseek.graph.capture``): the
module form, where conversions are Tensor-method calls, and the aten form, where they are
``aten.to`` / ``aten.contiguous`` overloads.

Whether a call is a no-op is decided, in this order, by

1. running the graph once on the example inputs and checking that the call returned its input
   object (what PyTorch does exactly when nothing changes);
2. otherwise, static facts: ``node.meta["val"]`` (FakeTensor, from export/make_fx),
   ``node.meta["tensor_meta"]`` (from ``ShapeProp``), parameters and buffers read by
   ``get_attr``, and what earlier conversions in the graph produced (``x.float().float()``).

Calls with ``copy=True`` or a memory format other than ``preserve_format`` are never removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from deepseek.graph.passes import GraphPass, attr_value, finish
from torch import fx

DTYPE_METHODS: dict[str, torch.dtype] = {
    "float": torch.float32,
    "double": torch.float64,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "long": torch.int64,
    "int": torch.int32,
    "short": torch.int16,
    "char": torch.int8,
    "byte": torch.uint8,
    "bool": torch.bool,
}
"""Tensor methods that convert to a fixed dtype."""

CAST_METHODS = frozenset({"to", "type", "contiguous", "cpu", *DTYPE_METHODS})
"""Every conversion the pass looks at."""

ATEN_CASTS: dict[Any, str] = {
    torch.ops.aten.to.dtype: "to",
    torch.ops.aten.to.dtype_layout: "to",
    torch.ops.aten.to.device: "to",
    torch.ops.aten.contiguous.default: "contiguous",
}
"""The same conversions in the aten form of the captured graph (``torch.export``), where every
``.float()`` / ``.type()`` / ``.cpu()`` / ``.to()`` became an ``aten.to`` overload."""

_PRESERVE = (None, torch.preserve_format)


@dataclass(frozen=True)
class TensorInfo:
    """What is known statically about a tensor value (``None``: unknown)."""

    dtype: torch.dtype | None = None
    device: torch.device | None = None
    contiguous: bool | None = None


def cast_method(node: fx.Node) -> str | None:
    """The conversion ``node`` performs (``"to"``, ``"float"``, ...), or ``None``."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return None
    if node.op == "call_method" and node.target in CAST_METHODS:
        return str(node.target)
    if node.op == "call_function":
        if node.target in ATEN_CASTS:
            return ATEN_CASTS[node.target]
        name = getattr(node.target, "__name__", "")
        if name in CAST_METHODS and getattr(torch.Tensor, name, None) is node.target:
            return name
    return None


def _tensor_info(t: torch.Tensor) -> TensorInfo:
    try:
        contiguous: bool | None = bool(t.is_contiguous())
    except Exception:  # noqa: BLE001 - symbolic shapes: unknown
        contiguous = None
    return TensorInfo(t.dtype, t.device, contiguous)


def _meta_info(gm: fx.GraphModule, node: fx.Node) -> TensorInfo | None:
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        return _tensor_info(val)
    tm = node.meta.get("tensor_meta")
    if tm is not None and hasattr(tm, "dtype"):
        return TensorInfo(tm.dtype, None, getattr(tm, "memory_format", None) == torch.contiguous_format)
    if node.op == "get_attr":
        value = attr_value(gm, node)
        if isinstance(value, torch.Tensor):
            return _tensor_info(value)
    return None


def _parse_to(
    args: Sequence[Any], kwargs: dict[str, Any], info_of: Callable[[fx.Node], TensorInfo | None]
) -> tuple[torch.dtype | None, torch.device | None] | None:
    """(dtype, device) a ``.to(...)`` call asks for; ``None`` if it may copy or is not understood."""
    if set(kwargs) - {"dtype", "device", "non_blocking", "copy", "memory_format", "layout"}:
        return None
    if kwargs.get("copy") or kwargs.get("memory_format") not in _PRESERVE:
        return None
    if kwargs.get("layout") not in (None, torch.strided):
        return None
    dtype, device = kwargs.get("dtype"), kwargs.get("device")
    for a in args:
        if isinstance(a, bool):
            if a:  # positional non_blocking / copy: stay on the safe side
                return None
        elif isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, (str, torch.device)):
            device = a
        elif isinstance(a, fx.Node):
            other = info_of(a)
            if other is None or other.dtype is None or other.device is None:
                return None
            dtype, device = other.dtype, other.device
        else:
            return None
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            return None
    if dtype is not None and not isinstance(dtype, torch.dtype):
        return None
    return dtype, device


def _static_result(
    node: fx.Node, method: str, src: TensorInfo, info_of: Callable[[fx.Node], TensorInfo | None]
) -> tuple[bool, TensorInfo]:
    """(is the call a no-op, what is known about its result) from static facts only."""
    args, kwargs = node.args[1:], dict(node.kwargs)
    if method in DTYPE_METHODS:
        target = DTYPE_METHODS[method]
        ok = not args and set(kwargs) <= {"memory_format"} and kwargs.get("memory_format") in _PRESERVE
        return ok and src.dtype == target, TensorInfo(target, src.device, src.contiguous)
    if method == "type":
        dtype = args[0] if args else kwargs.get("dtype")
        if not isinstance(dtype, torch.dtype) or len(args) > 1 or set(kwargs) - {"dtype", "non_blocking"}:
            return False, TensorInfo()
        return src.dtype == dtype, TensorInfo(dtype, src.device, src.contiguous)
    if method == "cpu":
        ok = not args and kwargs.get("memory_format") in _PRESERVE
        cpu = torch.device("cpu")
        return ok and src.device == cpu, TensorInfo(src.dtype, cpu, src.contiguous)
    if method == "contiguous":
        fmt = args[0] if args else kwargs.get("memory_format", torch.contiguous_format)
        if fmt != torch.contiguous_format:
            return False, TensorInfo(src.dtype, src.device, None)
        return src.contiguous is True, TensorInfo(src.dtype, src.device, True)
    parsed = _parse_to(args, kwargs, info_of)  # method == "to"
    if parsed is None:
        return False, TensorInfo()
    dtype, device = parsed
    noop = (dtype is None or src.dtype == dtype) and (device is None or src.device == device)
    result = TensorInfo(dtype or src.dtype, device or src.device, src.contiguous)
    return noop, result


class _IdentityRecorder(fx.Interpreter):
    """Runs the graph and notes, for each conversion, whether it returned its input object."""

    def __init__(self, gm: fx.GraphModule, nodes: set[fx.Node]) -> None:
        super().__init__(gm)
        self.nodes = nodes
        self.same: dict[fx.Node, bool] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n in self.nodes:
            self.same[n] = result is self.env[n.args[0]]  # type: ignore[index]
        return result


class DropNoopCasts(GraphPass):
    """Remove ``.to()``/``.type()``/``.float()``-style/``.contiguous()``/``.cpu()`` calls that
    change neither dtype, device nor layout; the result is numerically identical."""

    name = "tidy.drop-noop-casts"
    description = "remove tensor conversions that change nothing (same dtype, device and layout)"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        """Rewrite ``gm`` in place; ``None`` when no conversion could be removed."""
        casts = {n: m for n in gm.graph.nodes if (m := cast_method(n)) is not None}
        if not casts:
            return None
        observed = self._observe(gm, set(casts), example_inputs)
        derived: dict[fx.Node, TensorInfo | None] = {}

        def info_of(node: fx.Node) -> TensorInfo | None:
            return derived[node] if node in derived else _meta_info(gm, node)

        removed: Counter[str] = Counter()
        for node, method in casts.items():
            src_node: fx.Node = node.args[0]  # type: ignore[assignment]
            src = info_of(src_node)
            noop, result = _static_result(node, method, src or TensorInfo(), info_of)
            if observed is not None:
                noop = observed.get(node, False)
            if noop:
                derived[node] = src
                node.replace_all_uses_with(src_node)
                gm.graph.erase_node(node)
                removed[method] += 1
            else:
                derived[node] = _meta_info(gm, node) or result
        if not removed:
            return None
        detail = ", ".join(f"{m} x{c}" for m, c in sorted(removed.items()))
        self.record(f"removed {sum(removed.values())} no-op conversion(s): {detail}")
        return finish(gm)

    def _observe(
        self, gm: fx.GraphModule, nodes: set[fx.Node], example_inputs: Sequence[Any]
    ) -> dict[fx.Node, bool] | None:
        """Which conversions returned their input on the example inputs (``None``: not run)."""
        if not example_inputs:
            return None
        recorder = _IdentityRecorder(gm, nodes)
        try:
            with torch.no_grad():
                recorder.run(*example_inputs)
        except Exception as exc:  # noqa: BLE001 - fall back to static facts
            self.record(f"could not run on the example inputs ({type(exc).__name__}); used static facts")
            return None
        return recorder.same
