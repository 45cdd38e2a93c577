"""Creating a registered model from its validated options: the one place that calls a model
target (:func:`deepseek.create_model` and the trainer both come here)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from deepseek.config.components import build_options
from deepseek.errors import PluginError


def instantiate_model(target: Any, options: Any, *, name: str, device: Any = None) -> nn.Module:
    """``target(options)`` on ``device`` (``None``: the current default device); ``options`` is
    the model's ``Options`` instance or a mapping of its keys, validated here (paths ``model.*``)."""
    if options is None or isinstance(options, Mapping):
        options = build_options(target, dict(options or {}), kind="model", name=name, path="model")
    where = torch.device(device) if device is not None else contextlib.nullcontext()
    with where:
        model = target(options)
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"model {name!r}: its target returned {type(model).__name__}, not a torch.nn.Module; "
            "fix the plugin's deepseek_register_models target"
        )
    return model
