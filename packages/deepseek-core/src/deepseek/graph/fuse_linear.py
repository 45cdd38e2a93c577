"""Fuse two consecutive Linear layers with nothing non-linear between them into one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from deepseek.graph.match import match_linear
from deepseek.graph.passes import GraphPass, add_module, finish, make_linear, replace_node


class FuseConsecutiveLinear(GraphPass):
    """``B(A(x)) = x @ (W_B W_A)^T + (W_B b_A + b_B)``: one matmul instead of two.

    Fires only where the first layer's output feeds nothing but the second layer, and only when
    the fused product costs no more multiply-adds than the pair (a low-rank bottleneck such as
    768 -> 64 -> 768 is cheaper unfused and is left alone).
    """

    name = "fuse-linear"
    description = "fuse consecutive Linear layers with nothing non-linear between them"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        fired = False
        changed = True
        while changed:  # chains A -> B -> C collapse pairwise
            changed = False
            for node in list(gm.graph.nodes):
                second = match_linear(gm, node)
                if second is None or not isinstance(second.input, fx.Node):
                    continue
                first = match_linear(gm, second.input)
                if first is None or len(first.node.users) != 1:
                    continue
                w_a, w_b = first.weight, second.weight
                if w_a.dtype != w_b.dtype or w_a.device != w_b.device:
                    continue
                (mid, k), n = w_a.shape, w_b.shape[0]
                if n * k > mid * (k + n):
                    continue
                with torch.no_grad():
                    weight = w_b @ w_a
                    bias = None
                    if first.bias is not None:
                        bias = w_b @ first.bias
                    if second.bias is not None:
                        bias = second.bias.clone() if bias is None else bias + second.bias
                a_name, b_name = _label(first.node), _label(second.node)
                fused: nn.Linear = make_linear(weight, bias)
                target = add_module(gm, f"fused_{a_name}_{b_name}", fused)
                replace_node(gm, second.node, target, (first.input,))
                gm.graph.erase_node(first.node)
                self.record(
                    f"{a_name} ({k}->{mid}) + {b_name} ({mid}->{n}) -> {target} ({k}->{n})"
                )
                fired = changed = True
                break
        return finish(gm) if fired else None


def _label(node: fx.Node) -> str:
    return str(node.target) if node.op == "call_module" else node.name
