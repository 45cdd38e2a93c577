"""Fold eval-mode BatchNorm into the Linear or Conv layer that feeds it."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from deepseek.graph.match import match_linear
from deepseek.graph.passes import (
    GraphPass,
    add_module,
    finish,
    get_module,
    make_linear,
    replace_node,
)

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


class FoldBatchNorm(GraphPass):
    """``bn(conv(x))`` -> ``conv'(x)`` with ``W' = W * g / sqrt(var + eps)`` per output channel.

    BatchNorm in eval mode is an affine map per channel, so it merges into the preceding layer's
    weights and bias. For Linear, BatchNorm1d normalizes dim 1, which is the Linear's feature dim
    only for 2-D inputs: the pass checks that on the example inputs and skips 3-D activations.
    """

    name = "fold-batchnorm"
    description = "fold eval-mode BatchNorm into the preceding Linear/Conv layer"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        shapes_known = False
        fired = False
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or len(node.args) != 1:
                continue
            bn = get_module(gm, str(node.target))
            if type(bn) not in _BN or bn.training or not bn.track_running_stats:
                continue
            prev = node.args[0]
            if not isinstance(prev, fx.Node) or len(prev.users) != 1:
                continue
            folded: nn.Module | None = None
            lin = match_linear(gm, prev)
            if lin is not None and type(bn) is nn.BatchNorm1d:
                if not shapes_known:
                    ShapeProp(gm).propagate(*example_inputs)
                    shapes_known = True
                meta = prev.meta.get("tensor_meta")
                if meta is None or len(meta.shape) != 2:
                    continue
                scale, shift = _affine(bn)
                with torch.no_grad():
                    weight = lin.weight * scale[:, None]
                    bias = shift + (scale * lin.bias if lin.bias is not None else 0)
                folded, src = make_linear(weight, bias), lin.input
            elif prev.op == "call_module":
                conv = get_module(gm, str(prev.target))
                if _CONV.get(type(conv)) is not type(bn) or len(prev.args) != 1 or prev.kwargs:
                    continue
                folded, src = _fold_conv(conv, bn), prev.args[0]
            if folded is None:
                continue
            label = str(prev.target) if prev.op == "call_module" else prev.name
            target = add_module(gm, f"{label}_bn", folded)
            replace_node(gm, node, target, (src,))
            gm.graph.erase_node(prev)
            self.record(f"folded {node.target} into {label} -> {target}")
            fired = True
        return finish(gm) if fired else None


def _affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``scale`` and ``shift`` with ``bn(y) == y * scale + shift`` in eval mode."""
    with torch.no_grad():
        inv_std = torch.rsqrt(bn.running_var + bn.eps)  # type: ignore[operator]
        gamma = bn.weight if bn.weight is not None else torch.ones_like(inv_std)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(inv_std)
        scale = gamma * inv_std
        return scale, beta - bn.running_mean * scale  # type: ignore[operator]


def _fold_conv(conv: nn.Module, bn: nn.Module) -> nn.Module:
    scale, shift = _affine(bn)
    new = copy.deepcopy(conv).eval().requires_grad_(False)
    with torch.no_grad():
        shape = (-1,) + (1,) * (new.weight.dim() - 1)
        new.weight.mul_(scale.reshape(shape))
        bias = shift + (scale * conv.bias if conv.bias is not None else 0)
        if new.bias is None:
            new.bias = nn.Parameter(bias, requires_grad=False)
        else:
            new.bias.copy_(bias)
    return new
