"""Constant folding: compute once what does not depend on the inputs' values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.node import map_arg

from deepseek.graph.passes import GraphPass, add_constant, attr_value, finish, get_module

_META_METHODS = {"size", "dim", "numel", "ndimension"}
_META_ATTRS = {"shape", "device", "dtype", "ndim"}
_IMPURE_NAMES = ("rand", "normal", "bernoulli", "dropout", "multinomial", "empty", "uniform", "poisson")


class ConstantFolding(GraphPass):
    """Evaluate sub-graphs that read only parameters, buffers and literals; store the results.

    The optimizer specializes a graph to one input signature (it re-optimizes for a new shape),
    so shape, device and dtype queries of the inputs are constants too: ``torch.arange(T)`` and
    the position-embedding lookup it feeds become one stored tensor. Views of a single parameter
    (a transpose, a reshape) are left alone: storing them would only duplicate memory.
    """

    name = "const-fold"
    description = "fold input-independent sub-graphs (and input-shape queries) into constants"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        env: dict[fx.Node, Any] = {}
        placeholders: dict[fx.Node, Any] = {}
        inputs = iter(example_inputs)
        specialized: set[fx.Node] = set()
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                placeholders[node] = next(inputs, None)
            elif node.op == "get_attr":
                env[node] = attr_value(gm, node)
            elif self._meta_query(node, placeholders):
                env[node] = _run(gm, node, {**env, **placeholders})
                specialized.add(node)
            elif node.op in ("call_function", "call_method", "call_module") and self._foldable(gm, node, env):
                env[node] = _run(gm, node, env)
                if any(d in specialized for d in node.all_input_nodes):
                    specialized.add(node)
        folded: list[str] = []
        shapes = False
        for node in list(gm.graph.nodes):
            if node not in env or node.op == "get_attr" or not _has_dynamic_user(node, env):
                continue
            value = env[node]
            shapes = shapes or node in specialized
            if isinstance(value, torch.Tensor):
                if _is_view_of_constant(node, value, env):
                    continue
                name = add_constant(gm, f"_folded_{node.name}", value.detach().clone())
                with gm.graph.inserting_before(node):
                    new = gm.graph.get_attr(name)
                new.meta.update(node.meta)
                node.replace_all_uses_with(new)
                folded.append(f"{node.name} {tuple(value.shape)}")
            elif _is_literal(value):
                for user in list(node.users):
                    user.args = map_arg(user.args, lambda n, node=node, value=value: value if n is node else n)
                    user.kwargs = map_arg(user.kwargs, lambda n, node=node, value=value: value if n is node else n)
                folded.append(f"{node.name}={value!r}")
        if not folded:
            return None
        shown = ", ".join(folded[:6]) + (", ..." if len(folded) > 6 else "")
        self.record(f"folded {len(folded)} node(s) into constants: {shown}")
        if shapes:
            self.record("specialized to the example inputs' shapes (the optimizer re-optimizes for new ones)")
        return finish(gm)

    @staticmethod
    def _meta_query(node: fx.Node, placeholders: dict[fx.Node, Any]) -> bool:
        if not node.args or node.args[0] not in placeholders:
            return False
        if not isinstance(placeholders[node.args[0]], torch.Tensor):
            return False
        if node.op == "call_method":
            return node.target in _META_METHODS
        return node.op == "call_function" and node.target is getattr and node.args[1] in _META_ATTRS

    @staticmethod
    def _foldable(gm: fx.GraphModule, node: fx.Node, env: dict[fx.Node, Any]) -> bool:
        deps = node.all_input_nodes
        if not all(d in env for d in deps):
            return False
        name = getattr(node.target, "__name__", str(node.target)).lower()
        if any(word in name for word in _IMPURE_NAMES) or name.endswith("_"):
            return False
        if node.op == "call_module":
            mod = get_module(gm, str(node.target))
            if mod.training or isinstance(mod, (nn.Dropout, nn.AlphaDropout)):
                return False
        return bool(deps) or node.op == "call_function"


def _run(gm: fx.GraphModule, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
    args = map_arg(node.args, lambda n: env[n])
    kwargs = map_arg(node.kwargs, lambda n: env[n])
    with torch.no_grad():
        if node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, str(node.target))(*rest, **kwargs)
        return get_module(gm, str(node.target))(*args, **kwargs)


def _has_dynamic_user(node: fx.Node, env: dict[fx.Node, Any]) -> bool:
    return any(user not in env for user in node.users)


def _is_literal(value: Any) -> bool:
    if isinstance(value, (bool, int, float, torch.device, torch.dtype)):
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float)) for v in value)


def _is_view_of_constant(node: fx.Node, value: torch.Tensor, env: dict[fx.Node, Any]) -> bool:
    ptr = value.untyped_storage().data_ptr()
    for dep in node.all_input_nodes:
        if dep.op != "get_attr":
            continue
        dep_value = env.get(dep)
        if isinstance(dep_value, torch.Tensor) and dep_value.untyped_storage().data_ptr() == ptr:
            return True
    return False

