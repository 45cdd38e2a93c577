"""The graph-pass interface and the helpers every pass shares.

A pass rewrites a :class:`torch.fx.GraphModule` traced from a model in eval mode. It returns the
rewritten module, or ``None`` when it did not fire. While it works it records what it changed
with :meth:`GraphPass.record`; :meth:`GraphPass.run` turns that into a :class:`PassReport`. The
optimizer checks every result against eager and drops a pass that changes the numbers, so a pass
may assume nothing about being kept.

Rules for pass authors:

- never mutate parameters or modules of the input graph in place: build new ones (the originals
  belong to the user's model);
- a pass is *terminal* when it returns something that is no longer an fx graph (a compiled
  module): the optimizer runs terminal passes last, at most one;
- ``tolerance`` is the maximum relative error the pass may introduce; ``None`` means the fp32
  default (:data:`FP32_TOLERANCE`). Reduced-precision passes state their own.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import fx, nn

FP32_TOLERANCE = 1e-4
"""Largest max-relative error an fp32 pass may introduce (see :func:`max_rel_error`)."""


@dataclass
class PassReport:
    """What one pass did to one graph."""

    name: str
    status: str = "no-op"
    """``applied``, ``no-op`` (did not fire), ``dropped`` (failed verification) or ``error``."""
    changes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_rel_error: float | None = None
    error: str | None = None

    @property
    def fired(self) -> bool:
        """True when the pass changed the graph."""
        return self.status in ("applied", "dropped")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "status": self.status,
            "changes": list(self.changes),
            "seconds": round(self.seconds, 4),
            "max_rel_error": self.max_rel_error,
            "error": self.error,
        }


class GraphPass:
    """Base class of graph-optimizer passes (register subclasses via ``deepseek_register_passes``)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    terminal: ClassVar[bool] = False
    tolerance: ClassVar[float | None] = None

    def __init__(self) -> None:
        self._changes: list[str] = []

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> nn.Module | None:
        """Rewrite ``gm``; return the result, or ``None`` when nothing applied."""
        raise NotImplementedError

    def record(self, change: str) -> None:
        """Note one change (shown in the per-pass report)."""
        self._changes.append(change)

    def run(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> tuple[nn.Module | None, PassReport]:
        """Apply the pass and report what changed. Exceptions propagate to the caller."""
        self._changes = []
        start = time.perf_counter()
        out = self.apply(gm, example_inputs)
        report = PassReport(self.name, seconds=time.perf_counter() - start, changes=list(self._changes))
        if out is None:
            report.status = "no-op"
        else:
            report.status = "applied"
            if not report.changes:
                report.changes.append("rewrote the graph")
        return out, report

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --------------------------------------------------------------------------- numerics


def max_rel_error(actual: Any, expected: Any) -> float:
    """Max abs difference over max abs reference value, over every tensor of two output trees.

    Outputs whose structure, shapes or dtypes differ count as ``inf``.
    """
    a_leaves, a_spec = torch.utils._pytree.tree_flatten(actual)
    e_leaves, e_spec = torch.utils._pytree.tree_flatten(expected)
    if a_spec != e_spec or len(a_leaves) != len(e_leaves):
        return float("inf")
    worst = 0.0
    for a, e in zip(a_leaves, e_leaves, strict=True):
        if not isinstance(e, torch.Tensor):
            if a != e:
                return float("inf")
            continue
        if not isinstance(a, torch.Tensor) or a.shape != e.shape:
            return float("inf")
        if e.numel() == 0:
            continue
        a64, e64 = a.detach().to(torch.float64), e.detach().to(torch.float64)
        if not e.is_floating_point() and not e.is_complex():
            if not torch.equal(a64, e64):
                return float("inf")
            continue
        if not torch.isfinite(a64).all() and not torch.equal(a64.isfinite(), e64.isfinite()):
            return float("inf")
        finite = e64.isfinite()
        diff = (a64 - e64).abs()[finite]
        scale = e64.abs()[finite].max() if finite.any() else torch.tensor(1.0)
        err = float(diff.max() / scale.clamp_min(1e-30)) if diff.numel() else 0.0
        worst = max(worst, err)
    return worst


# --------------------------------------------------------------------------- fx helpers


def get_module(gm: fx.GraphModule, target: str) -> nn.Module:
    """The sub-module of ``gm`` at dotted path ``target``."""
    return gm.get_submodule(target)


def unique_name(gm: fx.GraphModule, base: str) -> str:
    """A free attribute name on ``gm`` starting with ``base``."""
    base = base.replace(".", "_")
    name, i = base, 0
    while hasattr(gm, name):
        i += 1
        name = f"{base}_{i}"
    return name


def add_module(gm: fx.GraphModule, base: str, module: nn.Module) -> str:
    """Attach ``module`` to ``gm`` under a fresh name and return it."""
    name = unique_name(gm, base)
    gm.add_module(name, module)
    return name


def add_constant(gm: fx.GraphModule, base: str, value: torch.Tensor) -> str:
    """Register ``value`` as a (non-persistent) buffer of ``gm`` and return its name."""
    name = unique_name(gm, base)
    gm.register_buffer(name, value, persistent=False)
    return name


def attr_value(gm: fx.GraphModule, node: fx.Node) -> Any:
    """The tensor a ``get_attr`` node reads."""
    obj: Any = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part)
    return obj


_LINEAR_FUNCS = (F.linear, torch._C._nn.linear, torch.ops.aten.linear.default)


@dataclass
class LinearView:
    """A linear layer found in a graph: ``y = x @ weight.T + bias``."""

    node: fx.Node
    input: fx.Node
    weight: torch.Tensor
    bias: torch.Tensor | None


def as_linear(gm: fx.GraphModule, node: fx.Node) -> LinearView | None:
    """Recognise ``nn.Linear`` modules and ``F.linear`` calls whose weights are attributes."""
    if node.op == "call_module":
        mod = get_module(gm, str(node.target))
        if type(mod) is nn.Linear and len(node.args) == 1 and not node.kwargs:
            return LinearView(node, node.args[0], mod.weight, mod.bias)  # type: ignore[arg-type]
        return None
    if node.op == "call_function" and node.target in _LINEAR_FUNCS:
        args = list(node.args) + [None] * (3 - len(node.args))
        x = args[0]
        w = node.kwargs.get("weight", args[1])
        b = node.kwargs.get("bias", args[2])
        if not isinstance(w, fx.Node) or w.op != "get_attr":
            return None
        if b is not None and (not isinstance(b, fx.Node) or b.op != "get_attr"):
            return None
        return LinearView(node, x, attr_value(gm, w), None if b is None else attr_value(gm, b))
    return None


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A new eval-mode ``nn.Linear`` holding copies of ``weight`` and ``bias``."""
    out_f, in_f = weight.shape
    lin = nn.Linear(in_f, out_f, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin.eval().requires_grad_(False)


def is_getitem(node: fx.Node) -> bool:
    """True for ``x[i]`` nodes."""
    return node.op == "call_function" and node.target is operator.getitem


def finish(gm: fx.GraphModule) -> fx.GraphModule:
    """Dead-code-eliminate, lint and recompile ``gm`` after a rewrite."""
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def copy_graph_module(gm: fx.GraphModule) -> fx.GraphModule:
    """A new GraphModule with a copied graph that shares ``gm``'s parameters and sub-modules."""
    graph = fx.Graph()
    out = graph.graph_copy(gm.graph, {})
    graph.output(out)
    new = fx.GraphModule(gm, graph, class_name=type(gm).__name__)
    # graph_copy does not copy the output node's type annotation; keep the codegen identical.
    new.graph._codegen = gm.graph._codegen
    new.recompile()
    return new
