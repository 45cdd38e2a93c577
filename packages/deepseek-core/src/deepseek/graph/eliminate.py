"""Drop dropout and identity operations, which are no-ops in eval mode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from deepseek.graph.passes import GraphPass, finish, get_module

_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_DROPOUT_FUNCS = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.dropout, torch.ops.aten.dropout.default,
}


class DropDropoutIdentity(GraphPass):
    """Replace eval-mode dropout and ``nn.Identity`` by their input.

    A dropout module fires only when it is in eval mode; a functional dropout only when its
    ``training`` argument is the constant ``False`` (as tracing an eval-mode model records it).
    """

    name = "drop-dropout"
    description = "remove dropout and identity operations (no-ops in eval mode)"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        removed: dict[str, int] = {}
        for node in list(gm.graph.nodes):
            kind = self._kind(gm, node)
            if kind is None or not node.args or not isinstance(node.args[0], fx.Node):
                continue
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            removed[kind] = removed.get(kind, 0) + 1
        for kind, count in sorted(removed.items()):
            self.record(f"removed {count} {kind}")
        return finish(gm) if removed else None

    @staticmethod
    def _kind(gm: fx.GraphModule, node: fx.Node) -> str | None:
        if node.op == "call_module":
            mod = get_module(gm, str(node.target))
            if isinstance(mod, nn.Identity):
                return "identity"
            if isinstance(mod, _DROPOUT_MODULES) and (not mod.training or mod.p == 0):
                return "dropout"
            return None
        if node.op == "call_function" and node.target in _DROPOUT_FUNCS:
            # F.dropout*(x, p=0.5, training=True); F.*alpha_dropout(x, p, training=False);
            # torch.dropout / aten.dropout(x, p, train) with every argument given.
            default = node.target not in (F.alpha_dropout, F.feature_alpha_dropout)
            training = node.kwargs.get(
                "training", node.kwargs.get("train", node.args[2] if len(node.args) > 2 else default)
            )
            p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
            return "dropout" if training is False or p == 0 else None
        return None
