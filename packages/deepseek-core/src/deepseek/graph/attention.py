"""Rewrite hand-written attention into ``F.scaled_dot_product_attention``."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from deepseek.graph.eliminate import DropDropoutIdentity
from deepseek.graph.match import match_add
from deepseek.graph.passes import GraphPass, finish, replace_node

_MATMUL = {torch.matmul, operator.matmul}
_SOFTMAX = {F.softmax, torch.softmax}
_TRANSPOSE = {torch.transpose}
_MASKED_FILL = {torch.masked_fill}


@dataclass
class _Match:
    q: fx.Node
    k: fx.Node
    v: fx.Node
    scale: float
    mask: fx.Node | None
    mask_kind: str  # "none", "additive", "fill-inf", "fill-value"
    fill_value: float
    out: fx.Node


class AttentionToSDPA(GraphPass):
    """``softmax(Q K^T / sqrt(d) + mask) V`` -> ``scaled_dot_product_attention(Q, K, V, mask)``.

    Recognises ``matmul``/``@``, ``transpose(-2, -1)``, a constant scale by ``/`` or ``*``
    (optional), an additive mask or ``masked_fill(cond, value)`` (optional), ``softmax(dim=-1)``,
    and an eval-mode dropout on the probabilities. Intermediate results used elsewhere (e.g. the
    attention weights returned to the caller) stop the rewrite.
    """

    name = "attention-sdpa"
    description = "rewrite hand-written softmax(QK^T/sqrt(d)+mask)V attention into SDPA"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        if not any(_is_call(n, _SOFTMAX, "softmax") for n in gm.graph.nodes):
            return None
        ShapeProp(gm).propagate(*example_inputs)
        matches = [m for n in gm.graph.nodes if (m := _match(gm, n)) is not None]
        for m in matches:
            with gm.graph.inserting_before(m.out):
                mask: fx.Node | None = m.mask
                if m.mask_kind == "fill-inf":
                    mask = gm.graph.call_function(torch.logical_not, (m.mask,))
                elif m.mask_kind == "fill-value":
                    mask = gm.graph.call_function(torch.where, (m.mask, m.fill_value, 0.0))
            replace_node(gm, m.out, F.scaled_dot_product_attention, (m.q, m.k, m.v),
                         {"attn_mask": mask, "scale": m.scale})
            masked = "" if m.mask_kind == "none" else f", {m.mask_kind} mask"
            self.record(f"{m.out.name}: attention -> scaled_dot_product_attention (scale {m.scale:.6g}{masked})")
        return finish(gm) if matches else None


def _is_call(node: Any, funcs: set[Any], method: str) -> bool:
    if not isinstance(node, fx.Node):
        return False
    return (node.op == "call_function" and node.target in funcs) or (
        node.op == "call_method" and node.target == method
    )


def _arg(node: fx.Node, i: int, name: str, default: Any = None) -> Any:
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[i] if len(node.args) > i else default


def _ndim(node: Any) -> int | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return len(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _dtype(node: Any) -> torch.dtype | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return getattr(meta, "dtype", None)


def _single_use(node: fx.Node) -> bool:
    return len(node.users) == 1


def _match(gm: fx.GraphModule, out: fx.Node) -> _Match | None:
    if not _is_call(out, _MATMUL, "matmul") or len(out.args) != 2:
        return None
    probs, v = out.args
    while isinstance(probs, fx.Node) and DropDropoutIdentity._kind(gm, probs) is not None:
        if not _single_use(probs):
            return None
        probs = probs.args[0]
    if not _is_call(probs, _SOFTMAX, "softmax") or not _single_use(probs):  # type: ignore[arg-type]
        return None
    assert isinstance(probs, fx.Node)
    ndim = _ndim(probs)
    dim = _arg(probs, 1, "dim")
    if ndim is None or ndim < 3 or dim not in (-1, ndim - 1) or _arg(probs, 2, "dtype") is not None:
        return None
    scores = probs.args[0]
    mask, kind, fill = None, "none", 0.0
    if _is_call(scores, _MASKED_FILL, "masked_fill") and _single_use(scores):  # type: ignore[arg-type]
        assert isinstance(scores, fx.Node)
        mask, value = _arg(scores, 1, "mask"), _arg(scores, 2, "value")
        if not isinstance(value, (int, float)) or _dtype(mask) is not torch.bool:
            return None
        if value == -math.inf:
            kind = "fill-inf"
        elif value <= -1e4:
            kind, fill = "fill-value", float(value)
        else:
            return None
        scores = scores.args[0]
    elif isinstance(scores, fx.Node) and (add := match_add(scores)) is not None and _single_use(scores):
        for cand, other in ((add.left, add.right), (add.right, add.left)):
            if isinstance(other, fx.Node) and _scaled_qk(cand) is not None:
                if _dtype(other) != _dtype(cand):
                    return None
                scores, mask, kind = cand, other, "additive"
                break
        else:
            return None
    qk = _scaled_qk(scores)
    if qk is None:
        return None
    q, k, scale = qk
    if _ndim(v) != ndim or _ndim(q) != ndim or _ndim(k) != ndim:
        return None
    if scale is None:
        scale = 1.0
    if _dtype(q) != _dtype(k) or _dtype(q) != _dtype(v):
        return None
    return _Match(q, k, v, scale, mask, kind, fill, out)  # type: ignore[arg-type]


def _scaled_qk(node: Any) -> tuple[fx.Node, fx.Node, float | None] | None:
    """``(q, k, scale)`` when ``node`` is ``(q @ k^T) [/ c | * c]`` with single-use parts."""
    if not isinstance(node, fx.Node) or not _single_use(node):
        return None
    scale: float | None = None
    if node.op == "call_function" and node.target in (operator.truediv, torch.div, operator.mul, torch.mul):
        a, b = node.args[0], node.args[1]
        if node.target in (operator.truediv, torch.div):
            if not isinstance(b, (int, float)) or b == 0 or node.kwargs:
                return None
            node_, scale = a, 1.0 / b
        elif isinstance(b, (int, float)):
            node_, scale = a, float(b)
        elif isinstance(a, (int, float)):
            node_, scale = b, float(a)
        else:
            return None
        if not isinstance(node_, fx.Node) or not _single_use(node_):
            return None
        node = node_
    if not _is_call(node, _MATMUL, "matmul") or len(node.args) != 2:
        return None
    q, kt = node.args
    if not isinstance(q, fx.Node) or not _is_call(kt, _TRANSPOSE, "transpose"):
        return None
    assert isinstance(kt, fx.Node)
    ndim = _ndim(kt)
    dims = {int(d) % ndim for d in kt.args[1:3]} if ndim and len(kt.args) == 3 else set()
    if dims != {ndim - 2, ndim - 1}:  # type: ignore[operator]
        return None
    return q, kt.args[0], scale  # type: ignore[return-value]
