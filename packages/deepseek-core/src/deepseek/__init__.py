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
from deepseek.hookspecs import hookimpl
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

if TYPE_CHECKING:
    from deepseek.graph.optimized import optimize as optimize
    from deepseek.training.inference import load_model as load_model
    from deepseek.training.script import evaluate as evaluate
    from deepseek.training.script import fit as fit

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
    # ``deepseek.optimize`` (the graph optimizer), ``deepseek.load_model`` (a trained model) and
    # ``deepseek.fit`` / ``deepseek.evaluate`` (a script's own model and data) import torch on first use.
    if name == "optimize":
        from deepseek.graph.optimized import optimize

        return optimize
    if name == "load_model":
        from deepseek.training.inference import load_model

        return load_model
    if name in ("fit", "evaluate"):
        from deepseek.training import script

        return getattr(script, name)
    raise AttributeError(f"module 'deepseek' has no attribute {name!r}")
