"""The optional capabilities of the model contract (:class:`~deepseek.models.protocol.TrainableModel`):
each one's methods (:data:`CAPABILITIES`), which ones a model offers (:func:`model_capabilities`:
the methods its class overrides) and the one-line refusals of a model that lacks what a config
or a command needs (:func:`require_capabilities`, :func:`require_generation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from deepseek.errors import ConfigError, UsageError
from deepseek.models.protocol import GENERATION_HOWTO, TrainableModel


@dataclass(frozen=True)
class Capability:
    """An optional part of the model contract."""

    name: str
    methods: tuple[str, ...]
    what: str


CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability("blocks", ("block_modules",), "per-block structure (block_modules)"),
        Capability("activation_checkpointing", ("set_activation_checkpointing",),
                   "activation checkpointing (set_activation_checkpointing)"),
        Capability("residual_dtype", ("set_fp32_residual",), "a configurable residual dtype (set_fp32_residual)"),
        Capability("pipeline", ("split_stages", "pipeline_batch", "pipeline_loss"),
                   "pipeline stages (split_stages, pipeline_batch, pipeline_loss)"),
        Capability("tensor_parallel", ("tensor_parallel_plan",), "a tensor-parallel plan (tensor_parallel_plan)"),
        Capability("cached_decoding", ("new_cache", "forward_cached", "decode_window"),
                   "KV-cache decoding (new_cache, forward_cached, decode_window)"),
        Capability("generation", ("generate",), "text generation (generate)"),
        Capability("serving", ("serving_inputs", "serving_forward"),
                   "a deployment forward over a batch's inputs (serving_inputs, serving_forward)"),
    )
}
"""Every optional capability by name."""

def model_capabilities(model: nn.Module | type) -> frozenset[str]:
    """The capabilities a model (or model class) offers: those whose methods it overrides."""
    cls = model if isinstance(model, type) else type(model)
    if not issubclass(cls, TrainableModel):
        return frozenset()
    return frozenset(
        c.name for c in CAPABILITIES.values()
        if all(getattr(cls, m) is not getattr(TrainableModel, m) for m in c.methods)
    )


def outside_contract(model: nn.Module | type, capability: str) -> str:
    """For a refusal of ``capability``: ``""``, or, when ``model``'s class defines every method of
    it without subclassing :class:`TrainableModel` (a plain ``nn.Module`` with ``serving_inputs``
    and ``serving_forward``), the clause saying that capabilities are read from that base class."""
    cls = model if isinstance(model, type) else type(model)
    methods = CAPABILITIES[capability].methods
    if issubclass(cls, TrainableModel) or not all(callable(getattr(cls, m, None)) for m in methods):
        return ""
    return (f"; {cls.__name__} defines {' and '.join(methods)}, but capabilities are offered only by a subclass "
            "of deepseek.models.protocol.TrainableModel: derive the class from it instead of nn.Module")


def require_capabilities(model: nn.Module, needed: Mapping[str, tuple[str, str]], *, model_name: str) -> None:
    """Refuse ``model`` when it lacks a capability of ``needed`` (capability -> (what needs it,
    how to do without)), with one line naming the setting, the capability and the model."""
    offered = model_capabilities(model)
    for name, (asked_by, instead) in needed.items():
        if name in offered:
            continue
        cap = CAPABILITIES[name]
        raise ConfigError(
            f"{asked_by} needs {cap.what}, which model {model_name!r} ({type(model).__name__}) does "
            f"not offer; {instead}, or use a model that offers it (docs/plugins.md, 'Models')"
            f"{outside_contract(model, name)}"
        )


def require_generation(model: nn.Module, *, command: str = "generate") -> None:
    """Refuse ``model`` for ``command`` (a CLI command's name) in one line when it does not
    offer capability ``generation``, saying how to add it."""
    if "generation" in model_capabilities(model):
        return
    raise UsageError(
        f"{command}: the model ({type(model).__name__}) does not generate text (capability 'generation'); "
        f"{GENERATION_HOWTO}, or use a model that offers it, such as the GPT presets"
    )
