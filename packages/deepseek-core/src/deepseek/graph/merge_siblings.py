"""Merge sibling Linear layers that read the same input (Q/K/V style) into one matmul."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx

from deepseek.graph.match import LinearView, match_linear
from deepseek.graph.passes import GraphPass, add_module, finish, make_linear


class MergeSiblingLinear(GraphPass):
    """``q, k, v = Wq x, Wk x, Wv x`` -> ``split(W_qkv x)``: one wide GEMM instead of several.

    Layers merge when they read the very same node, have the same input width, dtype, device and
    bias presence. The merged layer's output is split back along the last dim.
    """

    name = "merge-siblings"
    description = "merge sibling Linear layers reading the same input (Q/K/V) into one matmul"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        fired = False
        for node in list(gm.graph.nodes):
            groups: dict[tuple[Any, ...], list[LinearView]] = {}
            for user in node.users:
                lin = match_linear(gm, user)
                if lin is None or lin.input is not node:
                    continue
                key = (lin.weight.shape[1], lin.weight.dtype, lin.weight.device, lin.bias is None)
                groups.setdefault(key, []).append(lin)
            for group in groups.values():
                if len(group) < 2:
                    continue
                group.sort(key=lambda lv: _position(gm, lv.node))
                self._merge(gm, node, group)
                fired = True
        return finish(gm) if fired else None

    def _merge(self, gm: fx.GraphModule, src: fx.Node, group: list[LinearView]) -> None:
        with torch.no_grad():
            weight = torch.cat([lv.weight for lv in group], dim=0)
            bias = None if group[0].bias is None else torch.cat([lv.bias for lv in group])  # type: ignore[misc]
        labels = [str(lv.node.target) if lv.node.op == "call_module" else lv.node.name for lv in group]
        target = add_module(gm, "merged_" + "_".join(labels), make_linear(weight, bias))
        sizes = [int(lv.weight.shape[0]) for lv in group]
        with gm.graph.inserting_before(group[0].node):
            merged = gm.graph.call_module(target, (src,))
            parts = gm.graph.call_function(torch.split, (merged, sizes), {"dim": -1})
            outs = [gm.graph.call_function(operator.getitem, (parts, i)) for i in range(len(group))]
        for lv, out in zip(group, outs, strict=True):
            lv.node.replace_all_uses_with(out)
            gm.graph.erase_node(lv.node)
        self.record(f"{' + '.join(labels)} -> {target} ({weight.shape[1]}->{sum(sizes)}, split {sizes})")


def _position(gm: fx.GraphModule, node: fx.Node) -> int:
    for i, n in enumerate(gm.graph.nodes):
        if n is node:
            return i
    return -1
