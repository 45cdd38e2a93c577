"""``deepseek.optimize(model, example_inputs)`` and the :class:`OptimizedModel` it returns.

The model is captured into a ``torch.fx`` graph (:mod:`deepseek.graph.capture`), rewritten by
graph passes (each checked against eager), then run as is or through a final stage (oneDNN-packed
GEMMs, inductor), whichever is fastest on the example inputs (:mod:`deepseek.graph.search`).
Without example inputs the work is deferred to the first call, and repeated for each new input
signature (shapes, dtypes, devices), keeping the ``max_shapes`` most recent ones.

The result is an inference module: it runs under ``torch.no_grad()`` and puts the model in eval
mode. Rewritten weights (fused, merged, folded, packed for oneDNN, quantized) are snapshots taken
when a signature is optimized: after changing the model's weights, optimize it again. Models that
keep tensors in Python state (a KV cache) are not captured as graphs; they get eager or inductor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepseek.api_args import flag, path, real, whole
from deepseek.api_args import host as checked_host
from deepseek.errors import UsageError
from deepseek.graph.passes import GraphPass
from deepseek.graph.plan import Plan
from deepseek.graph.search import build
from deepseek.graph.spec import parse_spec
from deepseek.graph.verify import device_of, signature_of


class OptimizedModel(nn.Module):
    """A model wrapped by the optimizer: one verified pipeline per input signature (LRU)."""

    def __init__(self, model: nn.Module, passes: Any, *, max_shapes: int, options: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self._passes = passes
        self._options = options
        self._max_shapes = max_shapes
        self._entries: OrderedDict[tuple[Any, ...], tuple[Callable[..., Any], Plan]] = OrderedDict()

    @property
    def plans(self) -> list[Plan]:
        """Plans of the cached signatures, oldest first."""
        return [plan for _, plan in self._entries.values()]

    @property
    def plan(self) -> Plan | None:
        """The most recently built or used plan."""
        return next(reversed(self._entries.values()))[1] if self._entries else None

    def prepare(self, *args: Any) -> Plan:
        """Optimize for this input signature now (a no-op if it is already cached)."""
        return self._entry(args)[1]

    def _entry(self, args: tuple[Any, ...]) -> tuple[Callable[..., Any], Plan]:
        key = signature_of(args)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        device = device_of(self.model, args)
        spec = parse_spec(self._passes, device=device, **self._options)
        entry = build(self.model, args, spec)
        self._entries[key] = entry
        while len(self._entries) > self._max_shapes:
            self._entries.popitem(last=False)
        return entry

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``model(*args)``, through the pipeline built for these inputs' signature.

        Keyword arguments are not part of the optimized signature: calls with them run eager.
        """
        with torch.no_grad():
            if kwargs:
                return self.model(*args, **kwargs)
            fn, _ = self._entry(args)
            return fn(*args)

    def train(self, mode: bool = True) -> OptimizedModel:
        """An optimized model is for inference: ``train(True)`` is refused."""
        if mode:
            raise UsageError("an optimized model is inference-only; train the original model instead")
        return super().train(False)


def optimize(
    model: nn.Module,
    example_inputs: Any = None,
    passes: str | Sequence[str | GraphPass] = "auto",
    *,
    precision: str = "fp32",
    stages: Sequence[str] | None = None,
    tolerance: float | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    max_shapes: int = 8,
    runs: int = 10,
    warmup: int = 2,
    host: Any = None,
) -> OptimizedModel:
    """Return a module computing ``model``'s function faster, verified against eager.

    Args:
        model: the model; it is put in eval mode. Its parameters are shared, never modified:
            a pass that writes to them is refused (:class:`~deepseek.errors.PluginError` naming
            the pass and its distribution; :mod:`deepseek.graph.guard`).
        example_inputs: a tensor or tuple of positional inputs to optimize for now; ``None``
            defers the work to the first call (and to each new input signature).
        passes: ``"auto"`` (core's graph passes; every further pass it considers, kept only
            where it makes the pipeline faster; then the fastest verified stage: eager, the
            rewritten graph, oneDNN, inductor), ``"none"``, or a list of registered pass names
            (any plugin's, see ``deepseek.list_passes()``) applied in order. ``auto`` considers
            the passes registered by third-party plugins; ``["auto", "x"]`` also considers ``x``.
        stages: with ``auto``, time these final candidates instead of the defaults: ``"fx"``
            (the rewritten graph), ``"inductor"``, registered third-party terminal passes; on
            CPU also ``"onednn"`` (oneDNN-packed Linear layers), ``"onednn-bmm"`` and, only when
            named, ``"onednn-inductor"``, ``"inductor-cpp-gemm"``. Eager is always a candidate.
        precision: ``"fp32"``, or opt-in ``"bf16"`` / ``"int8"`` (each with its own tolerance;
            the plan reports the measured max relative error and top-1 agreement).
        tolerance: max relative error accepted (default 1e-4 for fp32, see
            ``deepseek.graph.passes.FP32_TOLERANCE``; 2e-2 for models computing in bf16/fp16).
        cache: reuse and store ``auto`` decisions on disk (``$DEEPSEEK_CACHE_DIR/optimize`` or
            ``~/.cache/deepseek/optimize``), keyed by model structure, input signature, device
            and versions, options and the third-party passes considered; ``cache_dir``
            overrides the location.
        max_shapes: input signatures kept (least recently used dropped first).
        runs, warmup: timing repetitions per candidate during the ``auto`` search.
        host: the :class:`~deepseek.plugins.host.PluginHost` pass names resolve on and whose
            third-party passes ``auto`` considers (default: the process's, ``get_host()``).

    In ``auto`` a tried pass is kept only when the pipeline is faster with it by more than the
    timing noise (:func:`deepseek.graph.verify.clear_gain`). A pass that raises or changes the
    numbers beyond the tolerance is dropped with an
    :class:`~deepseek.graph.plan.OptimizerWarning` naming it; the worst case is eager. What was
    decided, and why, is ``result.plan`` (:class:`~deepseek.graph.plan.Plan`).
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"optimize() needs a torch.nn.Module, got {type(model).__name__}")
    max_shapes, runs = whole(max_shapes, "max_shapes", minimum=1), whole(runs, "runs", minimum=1)
    warmup = whole(warmup, "warmup")
    if tolerance is not None:
        real(tolerance, "tolerance", low=0.0, hint="; e.g. 1e-4, the largest relative error accepted")
    if not (passes is None or isinstance(passes, str)
            or (isinstance(passes, (list, tuple)) and all(isinstance(p, (str, GraphPass)) for p in passes))):
        raise UsageError(f"passes: expected 'auto', a pass name or a list of pass names / GraphPass objects, got "
                         f"{passes!r:.60}")
    if stages is not None and (not isinstance(stages, (list, tuple)) or not all(isinstance(n, str) for n in stages)):
        raise UsageError(f"stages: expected a list of stage names such as ['inductor'], got {stages!r:.60}")
    cache = flag(cache, "cache")
    cache_dir = None if cache_dir is None else path(cache_dir, "cache_dir")
    host = checked_host(host)
    model.eval()
    options = {
        "precision": precision,
        "stages": None if stages is None else tuple(stages),
        "tolerance": tolerance,
        "use_cache": cache,
        "cache_dir": cache_dir,
        "runs": runs,
        "warmup": warmup,
        "host": host,
    }
    inputs = () if example_inputs is None else _as_tuple(example_inputs)
    # Resolve names now so that a typo fails here rather than on the first call.
    parse_spec(passes, device=device_of(model, inputs), **options)
    wrapped = OptimizedModel(model, passes, max_shapes=max_shapes, options=options)
    if inputs:
        wrapped.prepare(*inputs)
    return wrapped


def _as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    return (example_inputs,)
