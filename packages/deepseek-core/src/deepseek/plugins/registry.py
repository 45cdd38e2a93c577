"""timm-style lookups over everything registered: ``create_x`` and ``list_x``."""

from __future__ import annotations

import fnmatch
from typing import Any

from deepseek.plugins.host import get_host


def _list(kind: str, pattern: str | None) -> list[str]:
    names = get_host().names(kind)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def list_strategies(pattern: str | None = None) -> list[str]:
    """Names of registered parallelism strategies (aliases included), optionally filtered by glob."""
    return _list("strategy", pattern)


def create_strategy(name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the strategy registered as ``name`` (``dist:name`` picks one distribution's)."""
    return get_host().create("strategy", name, *args, **kwargs)


def list_passes(pattern: str | None = None) -> list[str]:
    """Names of registered graph-optimizer passes."""
    return _list("pass", pattern)


def create_pass(name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Instantiate the graph pass registered as ``name``."""
    return get_host().create("pass", name, *args, **kwargs)


def list_encoders(pattern: str | None = None) -> list[str]:
    """Names of registered modality encoders."""
    return _list("encoder", pattern)


def create_encoder(name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Build the encoder registered as ``name``."""
    return get_host().create("encoder", name, *args, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of registered model builders."""
    return _list("model", pattern)


def create_model(name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Build the model registered as ``name``."""
    return get_host().create("model", name, *args, **kwargs)


def list_components(kind: str, pattern: str | None = None) -> list[str]:
    """Names of registered components of any kind, including kinds that plugins add
    (``list_components("compressor")``)."""
    get_host().check_kind(kind)
    return _list(kind, pattern)


def create_component(kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Create the component ``name`` of any kind (``dist:name`` picks one distribution's)."""
    return get_host().create(kind, name, *args, **kwargs)
