"""DeepSeek framework, core edition.

Importing :mod:`deepseek` is cheap: torch is imported only when a model, trainer or optimizer
is used. Component lookups follow timm's style::

    import deepseek
    deepseek.list_strategies()
    strategy = deepseek.create_strategy("single")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepseek._version import __version__
from deepseek.errors import (
    CheckpointError,
    ComponentConflictError,
    ComponentNotFoundError,
    ConfigError,
    DeepseekError,
    PluginError,
    UsageError,
)

_REGISTRY = (
    "create_dataset",
    "create_encoder",
    "create_lr_schedule",
    "create_model",
    "create_optimizer",
    "create_pass",
    "create_strategy",
    "create_tracker",
    "list_datasets",
    "list_encoders",
    "list_lr_schedules",
    "list_models",
    "list_optimizers",
    "list_passes",
    "list_strategies",
    "list_trackers",
)
_LAZY = {
    "hookimpl": "deepseek.hookspecs",
    **dict.fromkeys(_REGISTRY, "deepseek.plugins.registry"),
    "optimize": "deepseek.graph.optimized",
    "load_model": "deepseek.training.inference",
    "fit": "deepseek.training.script",
    "evaluate": "deepseek.training.script_eval",
    "export": "deepseek.graph.export_trained",
}
"""Names imported on first use: the plugin host and pluggy (``hookimpl``, ``create_*``, ``list_*``)
and torch (``optimize``, ``load_model``, ``fit``, ``evaluate``, ``export``), so that ``import deepseek`` and
the console command's first lines run before any of them (``deepseek train`` takes stop signals
from there: docs/distributed.md)."""

if TYPE_CHECKING:
    from deepseek.graph.export_trained import export as export
    from deepseek.graph.optimized import optimize as optimize
    from deepseek.hookspecs import hookimpl as hookimpl
    from deepseek.plugins.registry import (
        create_dataset,
        create_encoder,
        create_lr_schedule,
        create_model,
        create_optimizer,
        create_pass,
        create_strategy,
        create_tracker,
        list_datasets,
        list_encoders,
        list_lr_schedules,
        list_models,
        list_optimizers,
        list_passes,
        list_strategies,
        list_trackers,
    )
    from deepseek.training.inference import load_model as load_model
    from deepseek.training.script import fit as fit
    from deepseek.training.script_eval import evaluate as evaluate

__all__ = [
    "CheckpointError",
    "ComponentConflictError",
    "ComponentNotFoundError",
    "ConfigError",
    "DeepseekError",
    "PluginError",
    "UsageError",
    "__version__",
    "create_dataset",
    "create_encoder",
    "create_lr_schedule",
    "create_model",
    "create_optimizer",
    "create_pass",
    "create_strategy",
    "create_tracker",
    "evaluate",
    "export",
    "fit",
    "hookimpl",
    "list_datasets",
    "list_encoders",
    "list_lr_schedules",
    "list_models",
    "list_optimizers",
    "list_passes",
    "list_strategies",
    "list_trackers",
    "load_model",
    "optimize",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deepseek' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
