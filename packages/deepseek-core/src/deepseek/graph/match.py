"""Recognise common patterns in a captured graph, in every form the capture produces.

:func:`deepseek.graph.capture.capture` hands passes one of two forms of ``torch.fx`` graph:

- the *module form* (``fx.symbolic_trace``): sub-modules stay ``call_module`` nodes, torch
  functions and Tensor methods appear as written (``F.linear``, ``operator.add``, ``x.add``);
- the *aten form* (``torch.export``): every module is inlined, every op is an ``aten`` overload
  (``aten.linear.default``, ``aten.add.Tensor``) and parameters are read by ``get_attr`` nodes.

Each ``match_*`` function takes one node and returns a small view of its operands, or ``None``
when the node is not that pattern, so a pass built on them fires in both forms.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from deepseek.graph.passes import attr_value, get_module, is_tensor_subclass

aten = torch.ops.aten

_LINEAR_FUNCS = (F.linear, aten.linear.default)
_ADD_FUNCS = (operator.add, torch.add, aten.add.Tensor, aten.add.Scalar)
_SDPA_FUNCS = (F.scaled_dot_product_attention, aten.scaled_dot_product_attention.default)
_SDPA_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
_SDPA_DEFAULTS = (None, None, None, None, 0.0, False, None, False)
_ACTIVATION_MODULES: dict[type[nn.Module], str] = {nn.GELU: "gelu", nn.ReLU: "relu", nn.SiLU: "silu"}
_ACTIVATION_FUNCS: dict[Any, str] = {
    F.gelu: "gelu", aten.gelu.default: "gelu",
    F.relu: "relu", torch.relu: "relu", aten.relu.default: "relu",
    F.silu: "silu", aten.silu.default: "silu",
}


@dataclass
class LinearView:
    """A linear layer found in a graph: ``node`` computes ``input @ weight.T + bias``."""

    node: fx.Node
    input: Any
    weight: torch.Tensor
    bias: torch.Tensor | None
    weight_attr: str
    """Attribute path of ``weight`` on the graph module (``gm.graph.get_attr(weight_attr)``)."""
    bias_attr: str | None


def match_linear(gm: fx.GraphModule, node: fx.Node) -> LinearView | None:
    """A view of ``node`` when it is a linear layer whose weights are parameters or buffers.

    Forms: ``call_module`` of an ``nn.Linear`` (module form), ``F.linear`` (module form, from a
    model calling it), ``aten.linear.default`` (aten form, from either). A weight computed in
    the graph (not a ``get_attr``) does not match, nor does a weight that is a tensor subclass (a
    library's quantized weight, e.g. torchao's): it runs its own kernels, which no pass rewrites.
    """
    view = _match_linear(gm, node)
    if view is None or is_tensor_subclass(view.weight):
        return None
    return view


def _match_linear(gm: fx.GraphModule, node: fx.Node) -> LinearView | None:
    if node.op == "call_module":
        target = str(node.target)
        mod = get_module(gm, target)
        if type(mod) is not nn.Linear or len(node.args) != 1 or node.kwargs:
            return None
        bias_attr = None if mod.bias is None else f"{target}.bias"
        return LinearView(node, node.args[0], mod.weight, mod.bias, f"{target}.weight", bias_attr)
    if node.op != "call_function" or node.target not in _LINEAR_FUNCS:
        return None
    args = list(node.args) + [None] * (3 - len(node.args))
    w = node.kwargs.get("weight", args[1])
    b = node.kwargs.get("bias", args[2])
    if not isinstance(w, fx.Node) or w.op != "get_attr":
        return None
    if b is not None and (not isinstance(b, fx.Node) or b.op != "get_attr"):
        return None
    bias = None if b is None else attr_value(gm, b)
    return LinearView(node, node.kwargs.get("input", args[0]), attr_value(gm, w), bias, str(w.target),
                      None if b is None else str(b.target))


@dataclass
class AddView:
    """An addition ``left + right`` (operands are nodes or Python numbers)."""

    node: fx.Node
    left: Any
    right: Any

    def other(self, operand: fx.Node) -> Any:
        """The operand that is not ``operand`` (``None`` unless ``operand`` is exactly one side)."""
        if self.left is operand and self.right is not operand:
            return self.right
        if self.right is operand and self.left is not operand:
            return self.left
        return None


def match_add(node: fx.Node) -> AddView | None:
    """A view of ``node`` when it adds two values with no scaling.

    Forms: ``a + b`` / ``torch.add(a, b)`` / ``a.add(b)`` (module form), ``aten.add.Tensor`` and
    ``aten.add.Scalar`` (aten form). ``torch.add(a, b, alpha=2)`` does not match.
    """
    if node.op == "call_function" and node.target in _ADD_FUNCS:
        pass
    elif not (node.op == "call_method" and node.target == "add"):
        return None
    if len(node.args) != 2 or set(node.kwargs) - {"alpha"} or node.kwargs.get("alpha", 1) != 1:
        return None
    return AddView(node, node.args[0], node.args[1])


@dataclass
class AttentionView:
    """A ``scaled_dot_product_attention`` call with every argument resolved to its value."""

    node: fx.Node
    query: fx.Node
    key: fx.Node
    value: fx.Node
    attn_mask: Any
    dropout_p: float
    is_causal: bool
    scale: float | None
    enable_gqa: bool


def match_attention(node: fx.Node) -> AttentionView | None:
    """A view of ``node`` when it is scaled-dot-product attention.

    Forms: ``F.scaled_dot_product_attention`` (module form) and
    ``aten.scaled_dot_product_attention.default`` (aten form). Attention written out by hand
    (``softmax(q @ k.transpose(-2, -1) * scale) @ v``) is not matched: core's ``attention-sdpa``
    pass rewrites it into this call before any third-party pass runs in ``auto``.
    """
    if node.op != "call_function" or node.target not in _SDPA_FUNCS:
        return None
    values = list(node.args) + list(_SDPA_DEFAULTS[len(node.args):])
    for i, param in enumerate(_SDPA_PARAMS):
        if param in node.kwargs:
            values[i] = node.kwargs[param]
    if not all(isinstance(v, fx.Node) for v in values[:3]):
        return None
    return AttentionView(node, *values)


@dataclass
class ActivationView:
    """An element-wise activation: ``kind`` is ``gelu``, ``relu`` or ``silu``; ``approximate``
    is GELU's ``"none"`` or ``"tanh"`` (``""`` for the others)."""

    node: fx.Node
    input: Any
    kind: str
    approximate: str = ""


def match_activation(gm: fx.GraphModule, node: fx.Node) -> ActivationView | None:
    """A view of ``node`` when it is GELU, ReLU or SiLU applied out of place.

    Forms: ``nn.GELU`` / ``nn.ReLU`` / ``nn.SiLU`` modules, ``F.gelu``, ``F.relu``, ``torch.relu``,
    ``x.relu()``, ``F.silu`` (module form); ``aten.gelu.default``, ``aten.relu.default``,
    ``aten.silu.default`` (aten form). In-place variants do not match.
    """
    if len(node.args) != 1:
        return None
    if node.op == "call_module":
        mod = get_module(gm, str(node.target))
        kind = _ACTIVATION_MODULES.get(type(mod))
        if kind is None or node.kwargs or getattr(mod, "inplace", False):
            return None
        return ActivationView(node, node.args[0], kind, str(getattr(mod, "approximate", "")))
    if node.op == "call_method":
        return ActivationView(node, node.args[0], "relu") if node.target == "relu" and not node.kwargs else None
    kind = _ACTIVATION_FUNCS.get(node.target) if node.op == "call_function" else None
    if kind is None:
        return None
    allowed = {"approximate", "inplace"} if kind == "gelu" else {"inplace"}
    if set(node.kwargs) - allowed or node.kwargs.get("inplace", False):
        return None
    approximate = str(node.kwargs.get("approximate", "none")) if kind == "gelu" else ""
    return ActivationView(node, node.args[0], kind, approximate)
