"""The graph every pass receives: ``capture(model, example_inputs)``.

The optimizer, the contract tests and a plugin's own tests all call this one function, so a pass
sees in its tests exactly the graph it gets in production. The form depends on the model:

- ``fx.symbolic_trace`` first: the *module form*. Sub-modules stay ``call_module`` nodes (an
  ``nn.Linear`` is one node), functions and Tensor methods appear as the model wrote them. Every
  GPT preset is captured this way.
- ``torch.export`` (non-strict) when symbolic tracing fails (Python control flow on tensor
  shapes or values, iteration over a tensor...): the *aten form*. Modules are inlined into
  ``aten`` ops (``aten.linear.default``, ``aten.add.Tensor``,
  ``aten.scaled_dot_product_attention.default``), parameters are ``get_attr`` nodes, and the
  first node after the placeholders calls ``_guards_fn`` (export's input checks).

:mod:`deepseek.graph.match` recognises common ops in both forms.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

_STATE_MESSAGE = (
    "the model reads or mutates tensors outside its parameters, buffers and inputs (e.g. a KV "
    "cache); graph passes need a stateless forward"
)


class CaptureError(RuntimeError):
    """Neither fx symbolic tracing nor torch.export could capture the model."""


def capture(model: nn.Module, example_inputs: Sequence[Any]) -> tuple[fx.GraphModule, str]:
    """``(graph_module, method)``; ``method`` is ``"fx.symbolic_trace"`` (module form),
    ``"torch.export"`` (aten form), or ``"graph"`` when ``model`` already is a GraphModule.

    Parameters after the example inputs are traced at their defaults (``targets=None`` stays
    ``None``), so the graph computes ``model(*example_inputs)``. Captured graphs share the
    model's parameters; the passes never modify them in place.

    A model that reads tensors which are neither parameters, buffers (non-persistent ones
    included) nor inputs (Python-held state such as a KV cache) is refused: a graph would freeze that state into constants and
    lose its updates. Such models are left to eager and the inductor stage (dynamo guards on
    Python state).
    """
    if isinstance(model, fx.GraphModule):
        return model, "graph"
    concrete = _defaults_after(model, len(example_inputs))
    errors = []
    try:
        gm = fx.symbolic_trace(model, concrete_args=concrete or None)
    except Exception as exc:  # noqa: BLE001 - fall through to torch.export
        errors.append(f"fx: {type(exc).__name__}: {exc}")
    else:
        baked = [str(n.target) for n in gm.graph.nodes if n.op == "get_attr" and str(n.target).startswith("_tensor_constant")]
        if not baked:
            return gm, "fx.symbolic_trace"
        raise CaptureError(_STATE_MESSAGE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(model, tuple(example_inputs), strict=False)
    except Exception as exc:  # noqa: BLE001
        errors.append(f"torch.export: {type(exc).__name__}: {exc}")
    else:
        sig = exported.graph_signature
        # ``constants`` also holds the module's non-persistent buffers (timm's Swin keeps its
        # relative position index and attention mask so): module state, not Python-held state.
        lifted = set(exported.constants) - set(sig.non_persistent_buffers)
        if lifted or sig.buffers_to_mutate or sig.user_inputs_to_mutate:
            raise CaptureError(_STATE_MESSAGE)
        return exported.module(), "torch.export"  # type: ignore[return-value]
    raise CaptureError("; ".join(e.splitlines()[0][:300] for e in errors))


def _defaults_after(model: nn.Module, n_given: int) -> dict[str, Any]:
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for p in params[n_given:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            return {}
        out[p.name] = p.default
    return out
