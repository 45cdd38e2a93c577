"""What must fit together before any process starts: strategy, compression, precision, world size.

Two entry points share the rules:

- :func:`check_config` runs from pro's ``deepseek_validate_config`` hook, so ``deepseek train``
  and ``deepseek launch`` both reject a config that cannot work;
- :func:`check_launch` runs in ``deepseek launch`` only, where the number of processes is known.

A strategy class can add rules of its own with two optional classmethods: ``check_config(config)``
and ``check_launch(config, world_size, n_layers)``, each raising :class:`ConfigError`.
Every rule raises one line naming the conflicting fields and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from deepseek.errors import ConfigError

if TYPE_CHECKING:
    from deepseek.config.schema import Config

COMPRESSION_KEY = "compression"
NO_COMPRESSION = ("none", "")


def strategy_class(name: str) -> Any:
    """The class registered as strategy ``name`` (a ConfigError naming ``strategy.name`` if none)."""
    from deepseek.errors import ComponentConflictError, ComponentNotFoundError
    from deepseek.plugins.host import get_host

    try:
        return get_host().resolve("strategy", name).load()
    except (ComponentNotFoundError, ComponentConflictError) as exc:
        raise ConfigError(f"strategy.name: {exc}") from exc


def compression_conflict(name: str, cls: Any, method: Any) -> str | None:
    """The one-line error when strategy ``name`` cannot apply gradient compression ``method``."""
    if method is None or method in NO_COMPRESSION:
        return None
    supported = tuple(getattr(cls, "supports_compression", ()))
    if method in supported:
        return None
    has = f"it supports {', '.join(map(repr, supported))}" if supported else "it compresses no gradients"
    if method == "powersgd":
        why = "PowerSGD is a DDP communication hook and needs whole, replicated gradients"
    else:
        why = f"{name!r} does not reduce gradients in {method}"
    fix = "use --strategy ddp" if name != "ddp" else "pick a supported method"
    return (
        f"strategy.compression: {method!r} cannot be used with strategy {name!r} ({has}): {why}; "
        f"{fix} or remove strategy.compression"
    )


def check_raw_strategy(table: Mapping[str, Any]) -> None:
    """Check the raw ``[strategy]`` table (before the strategy's own options are validated), so
    that e.g. ``compression = "powersgd"`` with ``fsdp`` names the conflict, not an unknown key."""
    name = table.get("name", "single")
    if not isinstance(name, str) or COMPRESSION_KEY not in table:
        return
    problem = compression_conflict(name, strategy_class(name), table[COMPRESSION_KEY])
    if problem:
        raise ConfigError(problem)


def check_config(config: Config) -> None:
    """Cross-section rules that need no world size (pro's ``deepseek_validate_config``)."""
    cls = strategy_class(config.strategy.name)
    method = getattr(config.strategy.options, COMPRESSION_KEY, None)
    problem = compression_conflict(config.strategy.name, cls, method)
    if problem:
        raise ConfigError(problem)
    own = getattr(cls, "check_config", None)
    if callable(own):
        own(config)


def model_layers(config: Config) -> int:
    """Transformer blocks of the configured model, found by building it on the meta device."""
    import torch

    from deepseek.plugins.registry import create_model

    with torch.device("meta"):
        model = create_model(config.model.preset, **config.model.overrides())
    blocks = getattr(model, "blocks", None)
    if blocks is not None:
        return len(blocks)
    return int(getattr(getattr(model, "config", None), "n_layers", 1))


def check_launch(config: Config, world_size: int, *, cuda_devices: int, nproc_per_node: int) -> None:
    """Rules that need the job's size: raise ConfigError before any process starts."""
    name = config.strategy.name
    cls = strategy_class(name)
    if world_size > 1 and not getattr(cls, "needs_launcher", False):
        raise ConfigError(
            f"strategy.name: {name!r} trains in one process, but this launch starts {world_size}; "
            "use --strategy ddp (or fsdp, deepspeed, pipeline, hybrid), or launch -n 1"
        )
    backend = getattr(config.strategy.options, "backend", "auto")
    if cuda_devices and backend in ("auto", "nccl") and nproc_per_node > cuda_devices:
        raise ConfigError(
            f"launch: -n {nproc_per_node} processes per node but only {cuda_devices} CUDA device(s) "
            f"are visible; use -n {cuda_devices} or fewer (one process per GPU)"
        )
    if backend == "nccl" and not cuda_devices:
        raise ConfigError("strategy.backend: 'nccl' needs CUDA devices and none is visible; use 'gloo' or 'auto'")
    own = getattr(cls, "check_launch", None)
    if callable(own):
        own(config, world_size, model_layers(config))
