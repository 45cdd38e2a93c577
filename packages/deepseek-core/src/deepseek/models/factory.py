"""Creating a registered model or encoder from its validated options: the one place that calls
such a target (:func:`deepseek.create_model`, :func:`deepseek.create_encoder`, the trainer and
the models that hold encoders all come here)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from deepseek.config.components import build_options, keys_under, own_path
from deepseek.errors import PluginError


def instantiate_model(
    target: Any, options: Any, *, name: str, device: Any = None, kind: str = "model", path: str = "model",
    host: Any = None, label: str | None = None,
) -> nn.Module:
    """``target(options)`` on ``device`` (``None``: the current default device); ``options`` is
    the component's ``Options`` instance or a mapping of its keys, validated here (field paths
    ``path.key``; an encoder's own errors naming ``encoder.<name>.<key>`` are shown under ``path``
    too). ``kind``: ``model`` or ``encoder``. A target that subclasses (a class) or is an
    instance of (a factory object) :class:`~deepseek.models.protocol.BuildsComponents` gets
    ``host=`` too (default: the process's host). An encoder is held to the encoder contract
    (:func:`deepseek.models.encoder.check_encoder`); ``label`` (the registered component's
    :attr:`~deepseek.plugins.records.Component.label`; ``None`` for a script's model, whose
    errors are its own) names it in its errors, and in the one line that anything else a plugin's
    ``__init__`` raises becomes (:func:`deepseek.plugins.calls.instance_calls`: core's own models'
    and encoders' bugs keep their traceback, core's internal error)."""
    from deepseek.plugins.calls import instance_calls

    with keys_under(path, own_path(kind, name, path)):
        if options is None or isinstance(options, Mapping):
            options = build_options(target, dict(options or {}), kind=kind, name=name, path=path)
        with instance_calls(target, label, "__init__"):
            model = _call(target, options, device, host)
    if kind == "encoder":
        from deepseek.models.encoder import check_encoder, encoder_label

        check_encoder(model, encoder_label(name, label, path))
    if not isinstance(model, nn.Module):
        from deepseek.plugins.kinds import registration_hook_of

        raise PluginError(
            f"{kind} {name!r}: its target returned {type(model).__name__}, not a torch.nn.Module; "
            f"fix the plugin's {registration_hook_of(kind)} target"
        )
    return model


def registered_model(host: Any, name: str, options: Any = None, *, device: Any = None) -> nn.Module:
    """The model registered as ``name`` on ``host`` (a :class:`~deepseek.plugins.host.PluginHost`:
    a command's, :func:`deepseek.cli.context.command_host`; :func:`deepseek.create_model` passes
    the process's) built with ``options`` (its keys, validated) on ``device``
    (:func:`instantiate_model`); a component builder gets ``host=`` too."""
    from deepseek.plugins.calls import blames

    component = host.resolve("model", name)
    return instantiate_model(component.load(), options, name=name, device=device, host=host,
                             label=component.label if blames(component) else None)


def _call(target: Any, options: Any, device: Any, host: Any) -> Any:
    """``target(options)`` (with ``host=`` for a component builder) on ``device``."""
    from deepseek.models.protocol import BuildsComponents

    where = torch.device(device) if device is not None else contextlib.nullcontext()
    with where:
        if isinstance(target, BuildsComponents) or (isinstance(target, type) and issubclass(target, BuildsComponents)):
            if host is None:
                from deepseek.plugins.host import get_host

                host = get_host()
            return target(options, host=host)
        return target(options)
