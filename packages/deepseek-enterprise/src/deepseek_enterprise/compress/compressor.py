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

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deepseek.config.components import NoOptions
from deepseek.errors import DeepseekError, PluginError
from deepseek_enterprise.compress import LOADS_WITHOUT_TORCH


@dataclass
class Compressed:
    """The result of a compressor."""

    model: Any
    model_table: dict[str, Any]
    """The ``[model]`` config table of the result (``name`` and options)."""
    record: dict[str, Any] = field(default_factory=dict)
    """What was done (method, options, what was removed): written to ``compression.json``. A
    size figure of :data:`FIGURES` in it is ``[input's, result's]`` as :func:`model_figures` measures."""
    loads_with: str = "deepseek-core"
    """What loading the result needs beyond the distributions of its models (an edition, or a
    library such as torchao); :func:`loading_needs` adds those distributions."""


FIGURES = ("parameters", "linear_weight_bytes")
"""The size figures a record may state, each as ``[input's, result's]`` and measured as
:func:`model_figures` measures them (the contract tests hold a record to them)."""


def model_figures(model: Any) -> dict[str, int]:
    """The size figures of ``model`` that ``deepseek compress`` reports of both models and a record
    may state (:data:`FIGURES`): its parameters (elements of ``model.parameters()``) and the bytes of
    its ``nn.Linear`` weights as stored (:func:`linear_weight_bytes`)."""
    from torch import nn

    return {"parameters": sum(p.numel() for p in model.parameters()),
            "linear_weight_bytes": sum(linear_weight_bytes(m) for m in model.modules() if isinstance(m, nn.Linear))}


def figures_record(given: Any, result: Any) -> dict[str, list[int]]:
    """``{figure: [given's, result's]}`` of every :data:`FIGURES` entry, for a :class:`Compressed` record."""
    before, after = model_figures(given), model_figures(result)
    return {key: [before[key], after[key]] for key in FIGURES}


def linear_weight_bytes(layer: Any) -> int:
    """Bytes of a layer's weight as stored (a quantized weight's inner tensors)."""
    from deepseek.graph.passes import is_tensor_subclass

    w = layer.weight
    if not is_tensor_subclass(w):
        return w.numel() * w.element_size()
    parts, _ = w.__tensor_flatten__()
    return sum(getattr(w, p).numel() * getattr(w, p).element_size() for p in parts)


def refuse_quantized(model: Any, method: str) -> None:
    """One line refusing ``model`` for ``method``, a step that edits floating-point weights, when
    some of its weights are quantized (torchao's tensor subclasses: its kernels implement no
    norms, views or index selections of them)."""
    from deepseek.errors import UsageError
    from deepseek.graph.passes import is_tensor_subclass

    names = [name for name, p in model.named_parameters() if is_tensor_subclass(p)]
    if names:
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        raise UsageError(f"{method}: the model's weights are quantized ({names[0]}{more}); {method} takes "
                         f"floating-point weights: apply it before quantizing ('{method} + quantize.int8': a recipe "
                         "quantizes last)")


def loading_needs(host: Any, result: Compressed) -> str:
    """What loading ``result`` needs: its ``loads_with`` plus each distribution that provides a
    model of its ``[model]`` table (and of a ``base`` table inside it, as ``quantized`` has), then
    each plugin distribution whose code the model is made of (its modules' classes: a fusion
    method or an encoder from a plugin is needed to rebuild it too)."""
    dists: list[str | None] = []
    table: Any = result.model_table
    while isinstance(table, dict) and isinstance(table.get("name"), str):
        try:
            dists.append(host.resolve("model", table["name"]).dist)
        except Exception:  # noqa: BLE001 - a model no loaded plugin provides: nothing to add
            pass
        table = table.get("base")
    if result.model is not None:
        owners = {module.partition(".")[0].partition(":")[0]: record.dist
                  for record in host.records.values() for module in record.modules}
        dists += [owners.get(type(m).__module__.partition(".")[0]) for m in result.model.modules()]
    needs = [result.loads_with]
    for dist in dists:
        if dist and dist != "deepseek-core" and not any(dist in need for need in needs):  # core: implied
            needs.append(dist)
    return " + ".join(needs)


@dataclass(frozen=True)
class Recovery:
    """What a step that trains its input may use (a ``--max-drop`` search's ``--recovery-steps``)."""

    original: Path
    """The original model's checkpoint folder (or exported weights file): the teacher."""
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
    label: str = "compressor"
    """How errors name it: ``compressor <name> (<distribution> <version>)``, set by
    :func:`create_compressor`."""

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
    ``where.key``); an unknown name or option is a one-line error, a target that is not a
    :class:`Compressor` subclass a one-line :class:`PluginError` naming its distribution."""
    from deepseek_enterprise.plugin_calls import blamed_on

    component, target, options = _validated(host, name, table, where)
    with blamed_on(component.label, "__init__"):
        compressor = target(options, host=host)
    compressor.label = component.label
    return compressor


def check_without_torch(host: Any, name: str, table: dict[str, Any], *, where: str) -> None:
    """What :func:`create_compressor` checks that imports no torch: the name (found among the
    registered compressors, nothing imported) and, for a compressor that declares
    :data:`LOADS_WITHOUT_TORCH`, its target and options (its module imported); the job service
    runs it at submit."""
    host.check_kind("compressor")
    if host.resolve("compressor", name).declared(LOADS_WITHOUT_TORCH) is True:
        _validated(host, name, table, where)


def _validated(host: Any, name: str, table: dict[str, Any], where: str) -> tuple[Any, type[Compressor], Any]:
    """``(component, target, options)`` of the registered compressor ``name``: the target
    checked to be a :class:`Compressor` subclass, ``table`` validated as its ``Options``."""
    from deepseek.config.components import build_options

    host.check_kind("compressor")
    component = host.resolve("compressor", name)
    target = component.load()
    if not (isinstance(target, type) and issubclass(target, Compressor)):
        raise PluginError(f"{component.label}: registered as {target!r}, not a subclass of "
                          "deepseek_enterprise.compress.compressor.Compressor; its plugin must register a Compressor "
                          "subclass (docs/compress.md, 'Writing a compressor')")
    return component, target, build_options(target, dict(table), kind="compressor", name=name, path=where,
                                            label=component.label, see="docs/compress.md, 'Writing a compressor'")


def check_finite(compressor: Compressor, before: dict[str, Any], after: dict[str, Any]) -> None:
    """The compressed model's ``val_`` values are finite where the original's are: a compressor
    whose model evaluates to NaN or infinity (a broken rounding, a division by a zero scale) is one
    :class:`PluginError` naming it, raised before the written folder appears (the contract suite's
    rule, docs/plugins.md section 9)."""
    import math

    bad = {k: v for k, v in after.items() if k.startswith("val_") and isinstance(v, float) and not math.isfinite(v)
           and isinstance(before.get(k), float) and math.isfinite(before[k])}
    if bad:
        raise PluginError(f"{compressor.label}: the model it returned evaluates to non-finite values {bad}, where the "
                          "original's are finite; nothing was written; a bug in the plugin: upgrade it or report it to "
                          "its authors (docs/compress.md, 'Writing a compressor')")


@contextlib.contextmanager
def named_by(option: str, name: str) -> Iterator[None]:
    """A compressor's one-line refusal (:class:`~deepseek.errors.UsageError`) re-raised naming the
    option that chose compressor ``name`` (``--method prune.ffn: prunes GPT models; ...``). A
    compressor's refusals name the compressor only (``prune.ffn: ...``): the same step is chosen by
    ``--method``, by a ``--recipe`` or by a built-in recipe of a ``--max-drop`` search, whose table
    shows each refusal in its recipe's row."""
    from deepseek.errors import UsageError

    try:
        yield
    except UsageError as exc:
        line = str(exc)
        raise UsageError(f"{option} {line}" if line.startswith(f"{name}:") else f"{option} {name}: {line}") from None


def check_applies(compressor: Compressor, model: Any, config: Any) -> None:
    """``compressor.check_model``: its one-line refusal as it is; anything else it raises as a
    one-line :class:`PluginError` naming it (``deepseek_enterprise.plugin_calls``)."""
    from deepseek_enterprise.plugin_calls import blamed_on

    with blamed_on(compressor.label, "check_model"):
        compressor.check_model(model, config)


def run_step(host: Any, compressor: Compressor, model: Any, config: Any, context: StepContext) -> tuple[Compressed, Any]:
    """``(result, its config)`` of ``compressor.apply``, held to the contract before anything is
    written: it returns a :class:`Compressed` whose ``[model]`` table is a valid config that
    rebuilds the returned model (built on the meta device: its class, every state-dict key with its shape),
    and the model it was given is left as it was (no tensor written in place or replaced). A broken
    result, or an exception (other than a one-line error) from the compressor, is a
    one-line :class:`PluginError` naming the compressor and its distribution."""
    from torch import nn

    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.plugin_calls import blamed_on

    given = _fingerprint(model)
    with blamed_on(compressor.label, "compress"):
        result = compressor.apply(model, config, context)
    after = _fingerprint(model)
    changed = [name for name in {**given, **after} if given.get(name) != after.get(name)]
    if changed:
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise PluginError(f"{compressor.label}: compress changed the model it was given in place ({changed[0]}{more}), "
                          "which the later recipes of a --max-drop search start from; "
                          "nothing was written; a bug in the plugin: work on a copy (copy.deepcopy(model)) "
                          "(docs/compress.md, 'Writing a compressor')")
    if not isinstance(result, Compressed) or not isinstance(result.model, nn.Module):
        got = type(result.model).__name__ + " model" if isinstance(result, Compressed) else type(result).__name__
        raise PluginError(f"{compressor.label}: compress returned a {got}, not a Compressed with a torch.nn.Module; "
                          "nothing was written; a bug in the plugin: return Compressed(model, model_table, record) "
                          "(docs/compress.md, 'Writing a compressor')")
    try:
        new_config = config_from_dict({**config.to_dict(), "model": result.model_table}, host=host)
        rebuilt = _rebuild(host, new_config)
    except DeepseekError as exc:
        raise PluginError(f"{compressor.label}: the [model] table it returned does not rebuild a model ({exc}); "
                          f"{REBUILD_FIX}") from None
    problem = _state_mismatch(result.model.state_dict(), rebuilt.state_dict())
    if not problem and type(rebuilt) is not type(result.model):
        problem = f"a {type(rebuilt).__qualname__}, where it returned a {type(result.model).__qualname__}"
    if problem:
        raise PluginError(f"{compressor.label}: the [model] table it returned builds another model than the one it "
                          f"returned ({problem}); {REBUILD_FIX}")
    return result, new_config


def _fingerprint(model: Any) -> dict[str, tuple[int, int, tuple[int, ...]]]:
    """Each parameter's and buffer's identity, in-place version counter (``_version`` counts every
    in-place write: ``mul_``, ``copy_``, an optimizer step) and shape: reading them copies nothing,
    and a tensor written in place, or replaced, shows a new mark. An inference tensor (made under
    ``torch.inference_mode``) keeps no counter: its identity and shape are checked."""
    return {name: (id(t), -1 if t.is_inference() else t._version, tuple(t.shape))
            for name, t in model.state_dict(keep_vars=True).items()}


REBUILD_FIX = ("nothing was written; a bug in the plugin: Compressed.model_table must rebuild Compressed.model exactly "
               "(docs/compress.md, 'Writing a compressor')")


def _rebuild(host: Any, config: Any) -> Any:
    """The model of ``config`` on the meta device (shapes only; the run's RNG is not reseeded)."""
    import torch

    from deepseek.models.factory import instantiate_model
    from deepseek.training.build import run_host

    lookups = run_host(config, host)
    target = lookups.resolve("model", config.model.name).load()
    return instantiate_model(target, config.model.options, name=config.model.name, device=torch.device("meta"),
                             host=lookups)


def _state_mismatch(got: dict[str, Any], want: dict[str, Any]) -> str:
    """How ``got`` (the returned model's state) differs from ``want`` (the rebuilt one's), or ``""``."""
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    shapes = [k for k in got if k in want and tuple(got[k].shape) != tuple(want[k].shape)]
    if shapes:
        k = shapes[0]
        more = f" and {len(shapes) - 1} more" if len(shapes) > 1 else ""
        return f"{k} is {tuple(got[k].shape)} in the returned model, {tuple(want[k].shape)} from the table{more}"
    if extra or missing:
        return f"keys only in the returned model: {extra[:3]}, only from the table: {missing[:3]}"
    return ""
