"""The sampling arguments a model's ``generate`` is handed beyond ``top_k`` (``deepseek generate``,
``deepseek serve``): only those a request sets, and only if the method takes them."""

from __future__ import annotations

from typing import Any

from torch import nn

from deepseek.errors import UsageError


def sampling_arguments(model: nn.Module, *, top_p: float | None, repetition_penalty: float = 1.0) -> dict[str, Any]:
    """The keyword arguments past ``top_k`` to hand ``model.generate``: ``top_p`` when it is set
    and ``repetition_penalty`` when it is not 1.0 (a ``generate`` written before they existed
    serves every other request as before); a model whose ``generate`` takes no such argument is
    refused in one line when it is set."""
    asked = {k: v for k, v in (("top_p", top_p), ("repetition_penalty", repetition_penalty))
             if v is not None and not (k == "repetition_penalty" and v == 1.0)}
    if not asked:
        return {}
    import inspect

    try:
        params = inspect.signature(model.generate).parameters
    except (TypeError, ValueError):  # no signature to read: the call will tell
        return asked
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return asked
    for name in asked:
        if name not in params:
            option, off = "--" + name.replace("_", "-"), "None" if name == "top_p" else "1.0"
            raise UsageError(
                f"generate {option}: the model's generate ({type(model).__name__}.generate) takes no {name}; leave "
                f"out {option}, or give the method a {name}={off} argument passed on to generate_cached "
                "(docs/plugins.md, 'Models')"
            )
    return asked
