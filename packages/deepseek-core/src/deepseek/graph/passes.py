"""The graph-pass interface and the graph-editing helpers every pass shares.

A pass rewrites the ``torch.fx.GraphModule`` that :func:`deepseek.graph.capture.capture` made
from a model in eval mode (its two forms, and how to recognise ops in both, are described in
:mod:`deepseek.graph.match`). It returns the rewritten module, or ``None`` when it did not fire.
While it works it records what it changed with :meth:`GraphPass.record`; :meth:`GraphPass.run`
turns that into a :class:`PassReport`. The optimizer checks every result against eager and drops
a pass that changes the numbers, so a pass may assume nothing about being kept.

Rules for pass authors:

- never mutate parameters or modules of the input graph in place: build new ones (the originals
  belong to the user's model);
- a pass is *terminal* when it returns something that is no longer an fx graph (a compiled
  module): the optimizer runs terminal passes last, at most one;
- ``tolerance`` is the maximum relative error the pass may introduce; ``None`` means the fp32
  default (:data:`FP32_TOLERANCE`). Reduced-precision passes state their own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import fx, nn

FP32_TOLERANCE = 1e-4
"""Largest max-relative error an fp32 pass may introduce (see :func:`max_rel_error`)."""


STATUSES: dict[str, str] = {
    "applied": "fired, verified and kept in the pipeline",
    "no-op": "did not fire (apply returned None)",
    "dropped": "fired, but its outputs differ from eager's by more than the tolerance",
    "error": "raised while being created or applied, or its graph raised when run",
    "not-faster": "auto: fired and verified, but the pipeline was not faster with it by more than the timing noise",
}
"""Every :attr:`PassReport.status`, with its meaning."""


@dataclass
class PassReport:
    """What one pass did to one graph (its JSON form is :meth:`as_dict`)."""

    name: str
    status: str = "no-op"
    """One of :data:`STATUSES`."""
    changes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_rel_error: float | None = None
    error: str | None = None
    ms_with: float | None = None
    """``auto`` tried the pass on its own: median ms of the pipeline with it ..."""
    ms_without: float | None = None
    """... and without it, timed alternately on the example inputs."""

    @property
    def fired(self) -> bool:
        """True when the pass changed the graph (whether or not the change was kept)."""
        return self.status in ("applied", "dropped", "not-faster")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "status": self.status,
            "changes": list(self.changes),
            "seconds": round(self.seconds, 4),
            "max_rel_error": self.max_rel_error,
            "error": self.error,
            "ms_with": self.ms_with,
            "ms_without": self.ms_without,
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

    def example(self) -> tuple[nn.Module, tuple[Any, ...]] | None:
        """A model (eval mode) and its example inputs on which this pass fires: the kind of model
        it is for. The contract test (``tests/contract/test_passes_contract.py``) checks that the
        pass fires on it and keeps its numbers and parameters, besides checking it on its
        reference model. Default: none."""
        return None

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


def is_tensor_subclass(t: torch.Tensor) -> bool:
    """A wrapper tensor subclass (``__tensor_flatten__``), such as a torchao quantized weight."""
    return type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__")


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


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A new eval-mode ``nn.Linear`` holding copies of ``weight`` and ``bias``."""
    out_f, in_f = weight.shape
    lin = nn.Linear(in_f, out_f, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin.eval().requires_grad_(False)


def replace_node(gm: fx.GraphModule, node: fx.Node, target: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any] | None = None) -> fx.Node:
    """Put a call of ``target`` (a sub-module path: ``call_module``; else ``call_function``) in
    place of ``node``: inserted before it, given its users and metadata; ``node`` is erased."""
    with gm.graph.inserting_before(node):
        if isinstance(target, str):
            new = gm.graph.call_module(target, args, kwargs)
        else:
            new = gm.graph.call_function(target, args, kwargs)
    new.meta.update(node.meta)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new


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
