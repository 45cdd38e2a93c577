"""Checking candidates against eager, and timing them."""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from deepseek.graph.passes import (
    GraphPass,
    PassReport,
    copy_graph_module,
    is_tensor_subclass,
    max_rel_error,
)
from deepseek.graph.plan import STATS, OptimizerWarning


def signature_of(args: Sequence[Any]) -> tuple[Any, ...]:
    """Shapes, dtypes and devices of tensor arguments, also inside mappings, lists and tuples
    (a serving model's mapping of inputs), and values of the others: the cache key."""
    return tuple(_signature(a) for a in args)


def _signature(a: Any) -> tuple[Any, ...]:
    if isinstance(a, torch.Tensor):
        return ("T", tuple(a.shape), str(a.dtype), str(a.device))
    if isinstance(a, Mapping):
        return ("M", tuple((str(k), _signature(v)) for k, v in a.items()))
    if isinstance(a, (list, tuple)):
        return ("L", tuple(_signature(v) for v in a))
    return ("V", repr(a))


def describe_inputs(args: Sequence[Any]) -> str:
    """The inputs a plan is for, for a reader: ``features float32 (1, 8) on cpu`` for a serving
    model's mapping, ``int64 (1, 128) on cpu`` for token ids (:func:`signature_of` is the key)."""
    devices: set[str] = set()

    def one(a: Any) -> str:
        if isinstance(a, torch.Tensor):
            devices.add(str(a.device))
            return f"{str(a.dtype).removeprefix('torch.')} {tuple(a.shape)}"
        if isinstance(a, Mapping):
            return ", ".join(f"{k} {one(v)}" for k, v in a.items())
        if isinstance(a, (list, tuple)):
            return "[" + ", ".join(one(v) for v in a) + "]"
        return repr(a)

    text = "; ".join(one(a) for a in args)
    return f"{text} on {', '.join(sorted(devices))}" if devices else text


def device_of(model: nn.Module, args: Sequence[Any]) -> torch.device:
    """The device the model runs on (first tensor input, else first parameter, else CPU)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def has_subclass_weights(model: nn.Module) -> bool:
    """Whether any parameter or buffer of ``model`` is a wrapper tensor subclass: weights
    quantized by a library (torchao) rather than by the optimizer's own passes."""
    return any(is_tensor_subclass(t) for t in (*model.parameters(), *model.buffers()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fns: Sequence[Callable[..., Any]], args: Sequence[Any], *, runs: int, warmup: int,
              device: torch.device) -> list[float]:
    """Median wall time of each ``fn(*args)`` in milliseconds, after ``warmup`` calls of each
    (:func:`call_ms`)."""
    return [median(own) for own in call_ms(fns, args, runs=runs, warmup=warmup, device=device)]


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones of an even count)."""
    return statistics.median(values)


def clear_gain(faster: Sequence[float], slower: Sequence[float]) -> tuple[bool, float, float]:
    """Whether ``faster`` (times of calls taken in turn with ``slower``'s) is faster by more than
    the timing noise: ``(clearly, gain, spread)`` where ``gain`` is the median of the paired
    differences ``slower[i] - faster[i]`` and ``spread`` their median absolute deviation from it.
    For two pipelines that do the same work the differences scatter around zero and their
    median exceeds their spread about one time in twenty; a real gain moves the whole
    distribution."""
    diffs = [b - a for a, b in zip(faster, slower, strict=True)]
    gain = median(diffs)
    spread = median([abs(d - gain) for d in diffs])
    return gain > spread, gain, spread


def call_ms(fns: Sequence[Callable[..., Any]], args: Sequence[Any], *, runs: int, warmup: int,
            device: torch.device) -> list[list[float]]:
    """Wall time in milliseconds of each of ``runs`` calls ``fn(*args)`` of each function, after
    ``warmup`` calls of each.

    The functions take turns call by call, so a change in machine load during the measurement
    affects them alike (what a comparison between them needs).
    """
    times: list[list[float]] = [[] for _ in fns]
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns:
                fn(*args)
        _sync(device)
        for _ in range(runs):
            for fn, own in zip(fns, times, strict=True):
                start = time.perf_counter()
                fn(*args)
                _sync(device)
                own.append((time.perf_counter() - start) * 1e3)
    return times


def top1_agreement(actual: Any, expected: Any) -> float | None:
    """Fraction of positions whose argmax over the last dim agrees (first tensor output)."""
    a = torch.utils._pytree.tree_leaves(actual)
    e = torch.utils._pytree.tree_leaves(expected)
    if not a or not e or not isinstance(e[0], torch.Tensor) or not isinstance(a[0], torch.Tensor):
        return None
    if e[0].dim() < 2 or not e[0].is_floating_point() or a[0].shape != e[0].shape:
        return None
    return float((a[0].argmax(-1) == e[0].argmax(-1)).float().mean())


def warn_drop(name: str, why: str) -> None:
    """Count and announce a dropped pass."""
    STATS["dropped"] += 1
    warnings.warn(f"optimizer: pass {name!r} dropped: {why}; continuing without it", OptimizerWarning, stacklevel=5)


class Verifier:
    """Runs candidates on the example inputs and compares them with eager's outputs; with a
    ``guard`` (:class:`~deepseek.graph.guard.ModelGuard`), refuses once a pass has changed the
    model the reference was computed from."""

    def __init__(self, inputs: tuple[Any, ...], reference: Any, guard: Any = None) -> None:
        self.inputs = inputs
        self.reference = reference
        self.guard = guard

    def error(self, module: Callable[..., Any]) -> tuple[float, Any]:
        """``(max relative error, outputs)`` of ``module`` on the example inputs."""
        with torch.no_grad():
            out = module(*self.inputs)
        return max_rel_error(out, self.reference), out

    def apply(self, gp: GraphPass, current: nn.Module, tolerance: float) -> tuple[nn.Module | None, PassReport]:
        """Run ``gp`` on a copy of ``current``; the result if it verified, else ``None``. Whatever
        the pass did, the guard then checks the model (its error replaces any result)."""
        try:
            return self._apply(gp, current, tolerance)
        finally:
            if self.guard is not None:
                self.guard.check(gp)

    def _apply(self, gp: GraphPass, current: nn.Module, tolerance: float) -> tuple[nn.Module | None, PassReport]:
        try:
            src = copy_graph_module(current) if isinstance(current, fx.GraphModule) else current
            with torch.no_grad():
                out, report = gp.run(src, self.inputs)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a broken pass is dropped, never fatal
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            report = PassReport(gp.name, status="error", error=f"{type(exc).__name__}: {first}")
            warn_drop(gp.name, f"it raised {type(exc).__name__}: {first}")
            return None, report
        if out is None:
            return None, report
        if not isinstance(out, nn.Module):  # a str, a dict...: not a graph, said as such
            report.status, report.error = "error", f"apply returned {type(out).__name__}, not a GraphModule"
            warn_drop(gp.name, f"its apply returned {type(out).__name__}, not the rewritten torch.fx.GraphModule")
            return None, report
        try:
            err, _ = self.error(out)
        except Exception as exc:  # noqa: BLE001
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            report.status, report.error = "error", f"{type(exc).__name__}: {first}"
            warn_drop(gp.name, f"its graph raised {type(exc).__name__} when run")
            return None, report
        report.max_rel_error = err
        if not err <= tolerance:
            report.status = "dropped"
            report.error = f"max relative error {err:.3g} > tolerance {tolerance:g}"
            warn_drop(gp.name, f"max relative error {err:.3g} exceeds {tolerance:g}")
            return None, report
        return out, report
