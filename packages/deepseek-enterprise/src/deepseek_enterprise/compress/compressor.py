"""The compressor contract.

A compressor is registered through enterprise's ``deepseek_register_compressors`` hook; its
target is a :class:`Compressor` subclass with ``Options`` (validated like a config section, from
``deepseek compress --set KEY=VALUE``), created as ``target(options, host=host)``.
``compress(model, config, calibration)`` receives the trained model (fp32, eval mode, on the
chosen device), its validated :class:`~deepseek.config.schema.Config` and a few training batches
for methods that need data, and returns a :class:`Compressed`: the new model, the ``[model]``
table that rebuilds it (so the result loads with the edition named in ``loads_with``), and what
was done, for ``compression.json``.

``deepseek compress`` calls each compressor through ``apply(model, config, context)`` with a
:class:`StepContext`: the calibration batches, the step's position in its recipe and, in a
``--max-drop`` search, a :class:`Recovery` (the original run as teacher, its training config,
the step budget of ``--recovery-steps``, a scratch folder). The default ``apply`` is
``compress(model, config, context.calibration)``; a step that trains (``recover``) overrides it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
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
    """What loading the result needs beyond the distributions of its models (an edition, or a
    library such as torchao); :func:`loading_needs` adds those distributions."""


def loading_needs(host: Any, result: Compressed) -> str:
    """What loading ``result`` needs: its ``loads_with`` plus each distribution that provides a
    model of its ``[model]`` table (and of a ``base`` table inside it, as ``quantized`` has)."""
    needs = [result.loads_with]
    table: Any = result.model_table
    while isinstance(table, dict) and isinstance(table.get("name"), str):
        try:
            dist = host.resolve("model", table["name"]).dist
        except Exception:  # noqa: BLE001 - a model no loaded plugin provides: nothing to add
            dist = None
        if dist and dist != "deepseek-core" and not any(dist in need for need in needs):  # core: implied
            needs.append(dist)
        table = table.get("base")
    return " + ".join(needs)


@dataclass(frozen=True)
class Recovery:
    """What a step that trains its input may use (a ``--max-drop`` search's ``--recovery-steps``)."""

    original: Path
    """The original model's checkpoint folder: the teacher."""
    config: Any
    """The original run's validated :class:`~deepseek.config.schema.Config`: its ``[data]`` is
    the training data, its ``[train]``/``[precision]``/``[optimizer]`` the starting point."""
    steps: int
    """The step budget of a recovery that names none (``--recovery-steps``; 0: none)."""
    work_dir: Path
    """A scratch folder for training runs, removed when the command ends."""
    device: str
    """Where to train (the device the candidates are measured on)."""
    unavailable: str = ""
    """Why training is not possible for this model or data (one line); ``""`` when it is."""


@dataclass(frozen=True)
class StepContext:
    """What ``deepseek compress`` hands each step besides its input model."""

    calibration: list[Any] = field(default_factory=list)
    """Training batches for methods that need data (``--calibration-batches``)."""
    position: int = 0
    """The step's index in its recipe (0: its input is the original model)."""
    recovery: Recovery | None = None
    """Training allowed (a ``--max-drop`` search); ``None`` with ``--method``."""


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

    def apply(self, model: Any, config: Any, context: StepContext) -> Compressed:
        """What ``deepseek compress`` calls: :meth:`compress` with the context's calibration
        batches. Override it for a step that needs more of the context (the original, training)."""
        return self.compress(model, config, context.calibration)


def create_compressor(host: Any, name: str, table: dict[str, Any], *, where: str) -> Compressor:
    """The registered compressor ``name`` with options ``table`` validated (field paths
    ``where.key``); an unknown name or option is a one-line error."""
    from deepseek.config.components import build_options

    host.check_kind("compressor")
    target = host.resolve("compressor", name).load()
    return target(build_options(target, dict(table), kind="compressor", name=name, path=where), host=host)
