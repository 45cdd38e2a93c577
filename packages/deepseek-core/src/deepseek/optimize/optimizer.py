"""``deepseek.optimize``: pick, verify and cache the fastest correct pipeline for a model.

A *pipeline* is a sequence of graph passes (each verified against eager as it is applied) and
one final *stage* (run the rewritten fx graph as is, or compile it with inductor). ``auto`` runs
every built-in graph pass, then times the candidate stages on the example inputs and keeps the
fastest that verifies; eager is always a candidate, so the result is never slower than eager
on the example inputs and never outside the tolerance on them.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from deepseek.errors import UsageError
from deepseek.optimize import cache as disk
from deepseek.optimize.capture import CaptureError, capture
from deepseek.optimize.passes import (
    FP32_TOLERANCE,
    GraphPass,
    PassReport,
    copy_graph_module,
    max_rel_error,
)

DEFAULT_GRAPH_PASSES: tuple[str, ...] = (
    "drop-dropout",
    "fold-batchnorm",
    "fuse-linear",
    "merge-siblings",
    "attention-sdpa",
    "const-fold",
)
"""Graph passes ``auto`` applies, in this order."""

PRECISIONS: dict[str, str | None] = {"fp32": None, "bf16": "bf16", "int8": "int8-dynamic"}
"""``precision=`` value -> the pass that implements it."""

STATS: Counter[str] = Counter()
"""Process-wide counters: ``searches`` (auto searches run), ``cache_hits``, ``dropped``."""


class OptimizerWarning(UserWarning):
    """A pass or stage was dropped (it raised or changed the numbers); the optimizer went on."""


@dataclass
class Stage:
    """A final stage candidate: ``name`` and the pass that builds it (``None``: the fx graph)."""

    name: str
    graph_pass: GraphPass | None


def default_stages(device: torch.device) -> list[Stage]:
    """The final-stage candidates ``auto`` times on ``device``."""
    from deepseek.optimize.inductor import InductorStage

    stages = [Stage("fx", None), Stage("inductor", InductorStage())]
    if device.type == "cpu":
        stages.append(Stage("inductor-cpp-gemm", InductorStage(config=InductorStage.CPP_GEMM)))
    return stages


@dataclass
class Plan:
    """What the optimizer decided for one input signature, and why."""

    signature: str
    precision: str
    tolerance: float
    capture: str = "none"
    passes: list[PassReport] = field(default_factory=list)
    stage: str = "eager"
    candidates: list[dict[str, Any]] = field(default_factory=list)
    max_rel_error: float = 0.0
    top1_agreement: float | None = None
    cache_hit: bool = False
    cache_path: str | None = None
    seconds: float = 0.0

    @property
    def pipeline(self) -> list[str]:
        """Names of the passes that were kept, then the stage (just ``["eager"]`` when eager won)."""
        if self.stage == "eager":
            return ["eager"]
        return [r.name for r in self.passes if r.status == "applied"] + [self.stage]

    def timing(self, name: str) -> float | None:
        """Median ms of candidate ``name`` measured during the search (if it was timed)."""
        for c in self.candidates:
            if c["name"] == name:
                return c.get("median_ms")
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "signature": self.signature,
            "precision": self.precision,
            "tolerance": self.tolerance,
            "capture": self.capture,
            "pipeline": self.pipeline,
            "stage": self.stage,
            "passes": [r.as_dict() for r in self.passes],
            "candidates": self.candidates,
            "max_rel_error": self.max_rel_error,
            "top1_agreement": self.top1_agreement,
            "cache_hit": self.cache_hit,
            "cache_path": self.cache_path,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------- helpers


def _as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    if example_inputs is None:
        return ()
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    return (example_inputs,)


def signature_of(args: Sequence[Any]) -> tuple[Any, ...]:
    """Shapes, dtypes and devices of tensor arguments (values of the others): the cache key."""
    sig: list[Any] = []
    for a in args:
        if isinstance(a, torch.Tensor):
            sig.append(("T", tuple(a.shape), str(a.dtype), str(a.device)))
        else:
            sig.append(("V", repr(a)))
    return tuple(sig)


def device_of(model: nn.Module, args: Sequence[Any]) -> torch.device:
    """The device the model runs on (first tensor input, else first parameter, else CPU)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[..., Any], args: Sequence[Any], *, runs: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn(*args)`` in milliseconds, after ``warmup`` calls."""
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            fn(*args)
        _sync(device)
        for _ in range(runs):
            start = time.perf_counter()
            fn(*args)
            _sync(device)
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def top1_agreement(actual: Any, expected: Any) -> float | None:
    """Fraction of positions whose argmax over the last dim agrees (first tensor output)."""
    a = torch.utils._pytree.tree_leaves(actual)
    e = torch.utils._pytree.tree_leaves(expected)
    if not a or not e or not isinstance(e[0], torch.Tensor) or not isinstance(a[0], torch.Tensor):
        return None
    if e[0].dim() < 2 or not e[0].is_floating_point() or a[0].shape != e[0].shape:
        return None
    return float((a[0].argmax(-1) == e[0].argmax(-1)).float().mean())


def resolve_pass(spec: str | GraphPass) -> GraphPass:
    """A pass instance from a registered name (third-party plugins included) or an instance."""
    if isinstance(spec, GraphPass):
        return spec
    from deepseek.plugins.registry import create_pass

    obj = create_pass(spec)
    if not isinstance(obj, GraphPass):
        raise UsageError(
            f"pass {spec!r} created a {type(obj).__name__}, not a deepseek.optimize.GraphPass; "
            "fix the plugin's deepseek_register_passes target"
        )
    return obj


def _warn_drop(name: str, why: str) -> None:
    STATS["dropped"] += 1
    warnings.warn(f"optimizer: pass {name!r} dropped: {why}; continuing without it", OptimizerWarning, stacklevel=4)


class _Verifier:
    """Runs candidates on the example inputs and compares them with eager's outputs."""

    def __init__(self, inputs: tuple[Any, ...], reference: Any) -> None:
        self.inputs = inputs
        self.reference = reference

    def error(self, module: Callable[..., Any]) -> tuple[float, Any]:
        with torch.no_grad():
            out = module(*self.inputs)
        return max_rel_error(out, self.reference), out

    def apply(
        self, gp: GraphPass, current: nn.Module, tolerance: float
    ) -> tuple[nn.Module | None, PassReport]:
        """Run ``gp`` on a copy of ``current``; the result if it verified, else ``None``."""
        try:
            src = copy_graph_module(current) if isinstance(current, fx.GraphModule) else current
            with torch.no_grad():
                out, report = gp.run(src, self.inputs)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a broken pass is dropped, never fatal
            report = PassReport(gp.name, status="error", error=f"{type(exc).__name__}: {exc}")
            _warn_drop(gp.name, f"it raised {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            return None, report
        if out is None:
            return None, report
        try:
            err, _ = self.error(out)
        except Exception as exc:  # noqa: BLE001
            report.status, report.error = "error", f"{type(exc).__name__}: {exc}"
            _warn_drop(gp.name, f"its graph raised {type(exc).__name__} when run")
            return None, report
        report.max_rel_error = err
        if not err <= tolerance:
            report.status = "dropped"
            report.error = f"max relative error {err:.3g} > tolerance {tolerance:g}"
            _warn_drop(gp.name, f"max relative error {err:.3g} exceeds {tolerance:g}")
            return None, report
        return out, report


# --------------------------------------------------------------------------- building a plan


@dataclass
class Spec:
    """Parsed options of :func:`deepseek.optimize.optimize`."""

    auto: bool
    graph_passes: list[GraphPass]
    stages: list[Stage]
    precision: str = "fp32"
    tolerance: float | None = None
    use_cache: bool = True
    cache_dir: Path | None = None
    runs: int = 10
    warmup: int = 2

    @property
    def cacheable(self) -> bool:
        return self.auto and self.use_cache

    def precision_pass(self) -> GraphPass | None:
        name = PRECISIONS[self.precision]
        return None if name is None else resolve_pass(name)

    def cache_extra(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "tolerance": self.tolerance,
            "passes": [p.name for p in self.graph_passes],
            "stages": [s.name for s in self.stages],
        }


def parse_spec(
    passes: str | Sequence[str | GraphPass] | None,
    *,
    device: torch.device,
    stages: Sequence[str] | None = None,
    **options: Any,
) -> Spec:
    """Turn ``passes=`` into a :class:`Spec` (unknown names fail here, before any work).

    ``stages`` limits the final-stage candidates of ``auto`` to these names (see
    :func:`default_stages`).
    """
    precision = options.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if passes is None or passes == "none" or passes == "eager":
        items: list[str | GraphPass] = []
    elif isinstance(passes, str):
        items = [passes]
    else:
        items = list(passes)
    auto = "auto" in items
    resolved = [resolve_pass(p) for p in items if p != "auto"]
    graph = [p for p in resolved if not p.terminal]
    terminal = [p for p in resolved if p.terminal]
    if auto:
        builtin = [resolve_pass(n) for n in DEFAULT_GRAPH_PASSES]
        graph = builtin + [p for p in graph if p.name not in DEFAULT_GRAPH_PASSES]
        candidates = default_stages(device) + [Stage(p.name, p) for p in terminal]
        if stages is not None:
            known = {s.name for s in candidates}
            unknown = [n for n in stages if n not in known]
            if unknown:
                raise UsageError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
            candidates = [s for s in candidates if s.name in stages]
    else:
        if len(terminal) > 1:
            names = ", ".join(p.name for p in terminal)
            raise UsageError(f"passes {names} are all final stages; name at most one of them")
        candidates = [Stage(p.name, p) for p in terminal]
    use_cache = options.get("use_cache", True) and all(isinstance(p, str) for p in items)
    return Spec(auto=auto, graph_passes=graph, stages=candidates, **{**options, "use_cache": use_cache})


def build(model: nn.Module, inputs: tuple[Any, ...], spec: Spec) -> tuple[Callable[..., Any], Plan]:
    """Optimize ``model`` for ``inputs``: replay a cached decision, or search; always verified."""
    start = time.perf_counter()
    device = device_of(model, inputs)
    with torch.no_grad():
        reference = model(*inputs)
    verifier = _Verifier(inputs, reference)
    fp32_tol = spec.tolerance if spec.tolerance is not None else FP32_TOLERANCE
    plan = Plan(signature=repr(signature_of(inputs)), precision=spec.precision, tolerance=fp32_tol)
    key = directory = None
    if spec.cacheable:
        directory = disk.cache_dir(spec.cache_dir)
        key = disk.decision_key(model, signature_of(inputs), str(device), spec.cache_extra())
        decision = disk.load(key, directory)
        if decision is not None:
            result = _replay(model, decision, spec, verifier, plan, device)
            if result is not None:
                STATS["cache_hits"] += 1
                plan.cache_hit, plan.cache_path = True, str(directory / f"{key}.json")
                plan.seconds = time.perf_counter() - start
                return result, plan
            plan.passes.clear()
    fn = _search(model, spec, verifier, plan, device) if spec.auto else _pipeline(model, spec, verifier, plan)
    if key is not None and directory is not None:
        decision = {"pipeline": plan.pipeline, "stage": plan.stage, "candidates": plan.candidates}
        path = disk.store(key, directory, decision)
        plan.cache_path = None if path is None else str(path)
    plan.seconds = time.perf_counter() - start
    return fn, plan


def _graph_phase(
    model: nn.Module, passes: Sequence[GraphPass], spec: Spec, verifier: _Verifier, plan: Plan
) -> nn.Module | None:
    """Capture and apply ``passes`` then the precision pass; ``None`` if capture failed."""
    try:
        gm, plan.capture = capture(model, verifier.inputs)
    except CaptureError as exc:
        plan.capture = f"failed ({exc})"
        warnings.warn(f"optimizer: could not capture a graph ({exc}); graph passes skipped", OptimizerWarning, stacklevel=3)
        return None
    current: nn.Module = gm
    for gp in passes:
        out, report = verifier.apply(gp, current, plan.tolerance)
        plan.passes.append(report)
        if out is not None:
            current = out
    pp = spec.precision_pass()
    if pp is not None:
        tol = spec.tolerance if spec.tolerance is not None else (pp.tolerance or FP32_TOLERANCE)
        out, report = verifier.apply(pp, current, tol)
        plan.passes.append(report)
        if out is not None:
            current, plan.tolerance = out, tol
    return current


def _search(model: nn.Module, spec: Spec, verifier: _Verifier, plan: Plan, device: torch.device) -> Callable[..., Any]:
    STATS["searches"] += 1
    current = _graph_phase(model, spec.graph_passes, spec, verifier, plan)
    candidates: list[tuple[str, Callable[..., Any]]] = [("eager", model)]
    wants_fx = any(s.name == "fx" for s in spec.stages)
    if current is not None and wants_fx and any(r.status == "applied" for r in plan.passes):
        candidates.append(("fx", current))
    for stage in spec.stages:
        if stage.graph_pass is None:
            continue
        built, report = verifier.apply(stage.graph_pass, current if current is not None else model, plan.tolerance)
        if built is None:
            plan.candidates.append({"name": stage.name, "status": report.status, "error": report.error})
            continue
        candidates.append((stage.name, built))
    best: tuple[float, str, Callable[..., Any]] | None = None
    for name, fn in candidates:
        err, out = verifier.error(fn)
        ms = median_ms(fn, verifier.inputs, runs=spec.runs, warmup=spec.warmup, device=device)
        ok = err <= (FP32_TOLERANCE if name == "eager" else plan.tolerance)
        plan.candidates.append({"name": name, "status": "ok" if ok else "dropped", "median_ms": round(ms, 3),
                                "max_rel_error": err, "top1_agreement": top1_agreement(out, verifier.reference)})
        if ok and (best is None or ms < best[0]):
            best = (ms, name, fn)
    assert best is not None  # eager always verifies against itself
    _, plan.stage, fn = best
    _finalize(plan, fn, verifier)
    return fn


def _pipeline(model: nn.Module, spec: Spec, verifier: _Verifier, plan: Plan) -> Callable[..., Any]:
    current = _graph_phase(model, spec.graph_passes, spec, verifier, plan)
    base = current if current is not None else model
    fn: Callable[..., Any] = model
    plan.stage = "eager"
    if current is not None and any(r.status == "applied" for r in plan.passes):
        fn, plan.stage = current, "fx"
    for stage in spec.stages:
        built, report = verifier.apply(stage.graph_pass, base, plan.tolerance)  # type: ignore[arg-type]
        if built is not None:
            fn, plan.stage = built, stage.name
        else:
            plan.candidates.append({"name": stage.name, "status": report.status, "error": report.error})
    _finalize(plan, fn, verifier)
    return fn


def _replay(
    model: nn.Module, decision: dict[str, Any], spec: Spec, verifier: _Verifier, plan: Plan, device: torch.device
) -> Callable[..., Any] | None:
    """Rebuild a cached decision without timing anything; ``None`` if it no longer verifies."""
    stage_name = decision.get("stage")
    kept = [n for n in decision.get("pipeline", []) if n != stage_name]
    by_name = {p.name: p for p in spec.graph_passes}
    pp = spec.precision_pass()
    if pp is not None:
        by_name[pp.name] = pp
    if any(n not in by_name for n in kept):
        return None
    graph = [by_name[n] for n in kept if pp is None or n != pp.name]
    replay_spec = Spec(**{**spec.__dict__, "precision": spec.precision if pp is not None and pp.name in kept else "fp32"})
    plan.candidates = list(decision.get("candidates", []))
    if stage_name == "eager":
        fn: Callable[..., Any] = model
    else:
        current = _graph_phase(model, graph, replay_spec, verifier, plan)
        if current is None:
            return None
        stages = {s.name: s for s in spec.stages}
        if stage_name == "fx":
            fn = current
        elif stage_name in stages and stages[stage_name].graph_pass is not None:
            built, _ = verifier.apply(stages[stage_name].graph_pass, current, plan.tolerance)  # type: ignore[arg-type]
            if built is None:
                return None
            fn = built
        else:
            return None
    err, _ = verifier.error(fn)
    if not err <= plan.tolerance:
        return None
    plan.stage = str(stage_name)
    _finalize(plan, fn, verifier)
    return fn


def _finalize(plan: Plan, fn: Callable[..., Any], verifier: _Verifier) -> None:
    err, out = verifier.error(fn)
    plan.max_rel_error = err
    plan.top1_agreement = top1_agreement(out, verifier.reference)
