"""The compressor contract.

A compressor is registered through enterprise's ``deepseek_register_compressors`` hook; its
target is a :class:`Compressor` subclass with ``Options`` (validated like a config section, from
``deepseek compress --set KEY=VALUE``), created as ``target(options, host=host)``.
``compress(model, config, calibration)`` receives the trained model (fp32, eval mode, on the
chosen device), its validated :class:`~deepseek.config.schema.Config` and a few training batches
for methods that need data, and returns a :class:`Compressed`: the new model, the ``[model]``
table that rebuilds it (so the result loads with the edition named in ``loads_with``), and what
was done, for ``compression.json``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from deepseek.config.components import NoOptions


@dataclass
class Compressed:
    """The result of a compressor."""

    model: Any
    model_table: dict[str, Any]
    """The ``[model]`` config table of the result (``name`` and options)."""
    record: dict[str, Any] = field(default_factory=dict)
    """What was done (method, options, what was removed): written to ``compression.json``."""
    loads_with: str = "deepseek-core"
    """What loading the result needs (an edition, or a library such as torchao)."""


class Compressor(ABC):
    """Base class of a registered compressor."""

    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any, *, host: Any = None) -> None:
        self.options = options
        self.host = host

    def check_model(self, model: Any, config: Any) -> None:
        """Raise :class:`deepseek.errors.UsageError` (one line) for a model this compressor
        cannot take; called before anything is done."""

    @abstractmethod
    def compress(self, model: Any, config: Any, calibration: list[Any]) -> Compressed:
        """Compress ``model`` (do not modify it in place: the original is evaluated beside it)."""


def create_compressor(host: Any, name: str, table: dict[str, Any], *, where: str) -> Compressor:
    """The registered compressor ``name`` with options ``table`` validated (field paths
    ``where.key``); an unknown name or option is a one-line error."""
    from deepseek.config.components import build_options

    host.check_kind("compressor")
    target = host.resolve("compressor", name).load()
    return target(build_options(target, dict(table), kind="compressor", name=name, path=where), host=host)
