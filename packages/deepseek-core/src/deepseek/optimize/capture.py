"""Turn a model into a ``torch.fx.GraphModule`` the passes can rewrite."""

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
    """``(graph_module, method)``: fx symbolic tracing, else ``torch.export`` (non-strict).

    Parameters after the example inputs are traced at their defaults (``targets=None`` stays
    ``None``), so the graph computes ``model(*example_inputs)``. Captured graphs share the
    model's parameters; the passes never modify them in place.

    A model that reads tensors which are neither parameters, buffers nor inputs (Python-held
    state such as a KV cache) is refused: a graph would freeze that state into constants and
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
        if exported.constants or sig.buffers_to_mutate or sig.user_inputs_to_mutate:
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
