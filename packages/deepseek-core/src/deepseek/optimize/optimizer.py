"""``deepseek.optimize``: pick, verify and cache the fastest correct pipeline for a model.

A *pipeline* is a sequence of graph passes (each verified against eager as it is applied), an
optional precision pass, then one final *stage*: the rewritten fx graph as is, with backend
passes (oneDNN-packed Linear layers on CPU), or compiled by inductor. ``auto`` times every stage
on the example inputs and keeps the fastest that verifies; eager is always a candidate, so the
result is never slower than eager on the example inputs and never outside the tolerance.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepseek.errors import UsageError
from deepseek.optimize import cache as disk
from deepseek.optimize.capture import CaptureError, capture
from deepseek.optimize.passes import FP32_TOLERANCE, GraphPass, PassReport
from deepseek.optimize.plan import STATS, OptimizerWarning, Plan, Stage, all_stages
from deepseek.optimize.verify import Verifier, device_of, median_ms, signature_of, top1_agreement

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

SLOW_FACTOR = 3.0
"""A candidate whose first timed call takes this many times the best median so far is not
timed further (it cannot win, and a pathological one could take minutes)."""

HALF_TOLERANCE = 2e-2
"""Default max relative error for models that already compute in bf16/fp16."""

__all__ = [
    "DEFAULT_GRAPH_PASSES", "HALF_TOLERANCE", "PRECISIONS", "STATS", "OptimizerWarning", "Plan", "Spec",
    "Stage", "build", "device_of", "parse_spec", "resolve_pass", "signature_of",
]


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

    ``stages`` picks ``auto``'s final candidates by name (see :func:`all_stages`); by default
    the device's default stages are timed.
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
        default, extra = all_stages(device)
        own = [Stage(p.name, (p,)) for p in terminal]
        candidates = default + own
        if stages is not None:
            known = {s.name: s for s in default + extra + own}
            unknown = [n for n in stages if n not in known]
            if unknown:
                raise UsageError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
            candidates = [known[n] for n in dict.fromkeys(stages)]
    else:
        if len(terminal) > 1:
            names = ", ".join(p.name for p in terminal)
            raise UsageError(f"passes {names} are all final stages; name at most one of them")
        candidates = [Stage(p.name, (p,)) for p in terminal]
    use_cache = options.get("use_cache", True) and all(isinstance(p, str) for p in items)
    return Spec(auto=auto, graph_passes=graph, stages=candidates, **{**options, "use_cache": use_cache})


def build(model: nn.Module, inputs: tuple[Any, ...], spec: Spec) -> tuple[Callable[..., Any], Plan]:
    """Optimize ``model`` for ``inputs``: replay a cached decision, or search; always verified."""
    start = time.perf_counter()
    device = device_of(model, inputs)
    with torch.no_grad():
        reference = model(*inputs)
    verifier = Verifier(inputs, reference)
    plan = Plan(signature=repr(signature_of(inputs)), precision=spec.precision, tolerance=_base_tolerance(spec, reference))
    key = directory = None
    if spec.cacheable:
        directory = disk.cache_dir(spec.cache_dir)
        key = disk.decision_key(model, signature_of(inputs), str(device), spec.cache_extra())
        decision = disk.load(key, directory)
        if decision is not None:
            result = _replay(model, decision, spec, verifier, plan)
            if result is not None:
                STATS["cache_hits"] += 1
                plan.cache_hit, plan.cache_path = True, str(directory / f"{key}.json")
                plan.seconds = time.perf_counter() - start
                return result, plan
            plan = Plan(signature=plan.signature, precision=spec.precision, tolerance=_base_tolerance(spec, reference))
    fn = _search(model, spec, verifier, plan, device) if spec.auto else _pipeline(model, spec, verifier, plan)
    if key is not None and directory is not None:
        decision = {"pipeline": plan.pipeline, "stage": plan.stage, "candidates": plan.candidates}
        path = disk.store(key, directory, decision)
        plan.cache_path = None if path is None else str(path)
    plan.seconds = time.perf_counter() - start
    return fn, plan


def _base_tolerance(spec: Spec, reference: Any) -> float:
    if spec.tolerance is not None:
        return spec.tolerance
    leaves = [t for t in torch.utils._pytree.tree_leaves(reference) if isinstance(t, torch.Tensor)]
    if leaves and leaves[0].dtype in (torch.bfloat16, torch.float16):
        return HALF_TOLERANCE
    return FP32_TOLERANCE


def _graph_phase(
    model: nn.Module, passes: Sequence[GraphPass], spec: Spec, verifier: Verifier, plan: Plan
) -> nn.Module | None:
    """Capture and apply ``passes`` then the precision pass; ``None`` if capture failed."""
    try:
        gm, plan.capture = capture(model, verifier.inputs)
    except CaptureError as exc:
        plan.capture = f"failed ({exc})"
        warnings.warn(f"optimizer: could not capture a graph ({exc}); graph passes skipped", OptimizerWarning, stacklevel=4)
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


def _run_stage(
    stage: Stage, base: nn.Module, verifier: Verifier, tolerance: float
) -> tuple[nn.Module | None, list[PassReport], str]:
    """Apply a stage's passes to ``base``: ``(module, reports, status)``; status ``ok``, ``no-op``
    (every pass declined: the stage would equal the plain graph) or the failure."""
    current, reports, fired = base, [], False
    for gp in stage.passes:
        out, report = verifier.apply(gp, current, tolerance)
        reports.append(report)
        if out is not None:
            current, fired = out, True
        elif report.status != "no-op":
            return None, reports, report.status
    if stage.passes and not fired:
        return None, reports, "no-op"
    return current, reports, "ok"


def _search(model: nn.Module, spec: Spec, verifier: Verifier, plan: Plan, device: torch.device) -> Callable[..., Any]:
    STATS["searches"] += 1
    current = _graph_phase(model, spec.graph_passes, spec, verifier, plan)
    base = current if current is not None else model
    applied = current is not None and any(r.status == "applied" for r in plan.passes)
    candidates: list[tuple[str, Callable[..., Any], list[PassReport]]] = [("eager", model, [])]
    for stage in spec.stages:
        if not stage.passes:
            if applied:
                candidates.append((stage.name, base, []))
            continue
        if current is None and not all(p.terminal for p in stage.passes):
            plan.candidates.append({"name": stage.name, "status": "skipped", "error": "needs a captured graph"})
            continue
        built, reports, status = _run_stage(stage, base, verifier, plan.tolerance)
        if built is None:
            errors = [r.error for r in reports if r.error]
            plan.candidates.append({"name": stage.name, "status": status, "error": errors[0] if errors else None})
            continue
        candidates.append((stage.name, built, reports))
    best: tuple[float, str, Callable[..., Any], list[PassReport]] | None = None
    for name, fn, reports in candidates:
        err, out = verifier.error(fn)
        ok = name == "eager" or err <= plan.tolerance  # eager is the model itself: always acceptable
        entry = {"name": name, "status": "ok" if ok else "dropped", "max_rel_error": err,
                 "top1_agreement": top1_agreement(out, verifier.reference),
                 "changes": [c for r in reports for c in r.changes]}
        once = median_ms(fn, verifier.inputs, runs=1, warmup=0, device=device)
        if best is not None and once > SLOW_FACTOR * best[0]:
            # Far slower than the best so far even counting noise: not worth timing fully.
            plan.candidates.append({**entry, "status": "slow", "median_ms": round(once, 3)})
            continue
        ms = median_ms(fn, verifier.inputs, runs=spec.runs, warmup=spec.warmup, device=device)
        plan.candidates.append({**entry, "median_ms": round(ms, 3)})
        if ok and (best is None or ms < best[0]):
            best = (ms, name, fn, reports)
    assert best is not None  # eager is always acceptable
    _, plan.stage, fn, plan.stage_passes = best
    _finalize(plan, fn, verifier)
    return fn


def _pipeline(model: nn.Module, spec: Spec, verifier: Verifier, plan: Plan) -> Callable[..., Any]:
    current = _graph_phase(model, spec.graph_passes, spec, verifier, plan)
    fn: Callable[..., Any] = model
    plan.stage = "eager"
    if current is not None and any(r.status == "applied" for r in plan.passes):
        fn, plan.stage = current, "fx"
    for stage in spec.stages:
        if current is None and not all(p.terminal for p in stage.passes):
            continue
        built, reports, status = _run_stage(stage, current if current is not None else model, verifier, plan.tolerance)
        plan.stage_passes = reports
        if built is not None:
            fn, plan.stage = built, stage.name
    _finalize(plan, fn, verifier)
    return fn


def _replay(model: nn.Module, decision: dict[str, Any], spec: Spec, verifier: Verifier, plan: Plan) -> Callable[..., Any] | None:
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
        stages = {s.name: s for s in spec.stages}
        if stage_name not in stages:
            return None
        current = _graph_phase(model, graph, replay_spec, verifier, plan)
        if current is None:
            return None
        built, plan.stage_passes, _ = _run_stage(stages[stage_name], current, verifier, plan.tolerance)
        if built is None:
            return None
        fn = built
    err, _ = verifier.error(fn)
    if not err <= plan.tolerance:
        return None
    plan.stage = str(stage_name)
    _finalize(plan, fn, verifier)
    return fn


def _finalize(plan: Plan, fn: Callable[..., Any], verifier: Verifier) -> None:
    err, out = verifier.error(fn)
    plan.max_rel_error = err
    plan.top1_agreement = top1_agreement(out, verifier.reference)
