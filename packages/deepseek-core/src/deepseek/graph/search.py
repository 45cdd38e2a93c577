"""Build, verify, time and cache the pipeline for one input signature.

A *pipeline* is: graph passes (each verified against eager as it is applied), an optional
precision pass, then one final *stage*: the rewritten fx graph as is, with backend passes
(oneDNN-packed Linear layers on CPU), compiled by inductor, or a plugin's terminal pass.

``auto`` searches in three steps:

1. capture the model, apply core's graph passes, then the precision pass;
2. build every stage on that graph and time it; the fastest that verifies wins. Eager is always
   a candidate, so the result is never slower than eager on the example inputs;
3. try each further pass (:attr:`Spec.trial_passes`: named beside ``auto`` or registered by a
   third party) on the graph of step 1 before precision: it is kept when the winning stage,
   rebuilt on the graph with it, verifies and is faster than the pipeline so far, the two timed
   call by call in turn. Kept passes accumulate, in order.

A named list of passes (no ``auto``) applies each pass that verifies, times nothing, and ends
with the named final stage if there is one.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepseek.errors import DeepseekError, UsageError
from deepseek.graph import cache as disk
from deepseek.graph.capture import CaptureError, capture
from deepseek.graph.guard import ModelGuard
from deepseek.graph.passes import FP32_TOLERANCE, GraphPass, PassReport
from deepseek.graph.plan import STATS, OptimizerWarning, Plan, Stage
from deepseek.graph.spec import Spec, pass_label
from deepseek.graph.verify import (
    Verifier,
    call_ms,
    clear_gain,
    device_of,
    has_subclass_weights,
    median,
    median_ms,
    signature_of,
    top1_agreement,
    warn_drop,
)

SLOW_FACTOR = 3.0
"""A candidate whose first timed call takes this many times the best median so far is not
timed further (it cannot win, and a pathological one could take minutes)."""

HALF_TOLERANCE = 2e-2
"""Default max relative error for models that already compute in bf16/fp16."""

QUANTIZED_TOLERANCE = 1e-1
"""Default max relative error for models whose weights a library has quantized (tensor-subclass
weights, e.g. torchao int8): a compiled kernel quantizes activations in its own order, so a
value on a rounding boundary lands one level away and the difference grows with depth (2.7e-2
measured on a torchao int8 ``small``, inductor against eager)."""


@dataclass
class _Best:
    """The fastest verified pipeline so far."""

    ms: float
    stage: str
    fn: Callable[..., Any]
    stage_passes: list[PassReport]


def build(model: nn.Module, inputs: tuple[Any, ...], spec: Spec) -> tuple[Callable[..., Any], Plan]:
    """Optimize ``model`` for ``inputs``: replay a cached decision, or search; always verified."""
    start = time.perf_counter()
    device = device_of(model, inputs)
    with torch.no_grad():
        try:
            reference = model(*inputs)
        except DeepseekError:
            raise
        except Exception as exc:  # the example inputs do not fit: the user's call, said in one line
            from deepseek.plugins.records import describe_error

            raise UsageError(
                f"optimize(): {type(model).__name__}(*example_inputs) raised {describe_error(exc)}; pass the "
                "positional inputs its forward takes (a tensor or a tuple of them); a forward that takes "
                "keyword inputs (model(**batch)) cannot be optimized (docs/graph-passes.md)") from exc
    verifier = Verifier(inputs, reference, ModelGuard(model, lambda gp: pass_label(gp, spec.host)))
    plan = Plan(signature=repr(signature_of(inputs)), precision=spec.precision, tolerance=_base_tolerance(spec, reference, model))
    key = directory = None
    if spec.cacheable:
        directory = disk.cache_dir(spec.cache_dir)
        passes = [*spec.graph_passes, *spec.trial_passes, *(p for stage in spec.stages for p in stage.passes)]
        key = disk.decision_key(model, signature_of(inputs), str(device), spec.cache_extra(), passes)
        decision = disk.load(key, directory)
        if decision is not None:
            result = _replay(model, decision, spec, verifier, plan)
            if result is not None:
                STATS["cache_hits"] += 1
                plan.cache_hit, plan.cache_path = True, str(directory / f"{key}.json")
                plan.seconds = time.perf_counter() - start
                return result, plan
            plan = Plan(signature=plan.signature, precision=spec.precision, tolerance=_base_tolerance(spec, reference, model))
    fn = _search(model, spec, verifier, plan, device) if spec.auto else _pipeline(model, spec, verifier, plan)
    if key is not None and directory is not None:
        decision = {"pipeline": plan.pipeline, "stage": plan.stage, "candidates": plan.candidates}
        path = disk.store(key, directory, decision)
        plan.cache_path = None if path is None else str(path)
    plan.seconds = time.perf_counter() - start
    return fn, plan


def _base_tolerance(spec: Spec, reference: Any, model: nn.Module) -> float:
    if spec.tolerance is not None:
        return spec.tolerance
    if has_subclass_weights(model):
        return QUANTIZED_TOLERANCE
    leaves = [t for t in torch.utils._pytree.tree_leaves(reference) if isinstance(t, torch.Tensor)]
    if leaves and leaves[0].dtype in (torch.bfloat16, torch.float16):
        return HALF_TOLERANCE
    return FP32_TOLERANCE


# --------------------------------------------------------------------------- pipeline steps


def _capture(model: nn.Module, verifier: Verifier, plan: Plan) -> nn.Module | None:
    """The captured graph, or ``None`` (with a warning) when the model cannot be captured."""
    try:
        gm, plan.capture = capture(model, verifier.inputs)
    except CaptureError as exc:
        plan.capture = f"failed ({exc})"
        warnings.warn(f"optimizer: could not capture a graph ({exc}); graph passes skipped", OptimizerWarning, stacklevel=5)
        return None
    return gm


def _apply(passes: Sequence[GraphPass], current: nn.Module, verifier: Verifier, plan: Plan) -> nn.Module:
    """Apply each pass that verifies, in order, reporting every one in the plan."""
    for gp in passes:
        out, report = verifier.apply(gp, current, plan.tolerance)
        plan.passes.append(report)
        if out is not None:
            current = out
    return current


def _apply_precision(spec: Spec, current: nn.Module, verifier: Verifier, plan: Plan) -> nn.Module:
    """Apply the precision pass (if any) under its own tolerance, which becomes the plan's."""
    pp = spec.precision_pass()
    if pp is None:
        return current
    tolerance = spec.tolerance if spec.tolerance is not None else (pp.tolerance or FP32_TOLERANCE)
    out, report = verifier.apply(pp, current, tolerance)
    plan.passes.append(report)
    if out is None:
        return current
    plan.tolerance = tolerance
    return out


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


def _finalize(plan: Plan, fn: Callable[..., Any], verifier: Verifier) -> None:
    err, out = verifier.error(fn)
    plan.max_rel_error = err
    plan.top1_agreement = top1_agreement(out, verifier.reference)


# --------------------------------------------------------------------------- auto


def _search(model: nn.Module, spec: Spec, verifier: Verifier, plan: Plan, device: torch.device) -> Callable[..., Any]:
    STATS["searches"] += 1
    graph = _capture(model, verifier, plan)
    current = None
    trials_at, graph_tolerance = len(plan.passes), plan.tolerance
    if graph is not None:
        graph = _apply(spec.graph_passes, graph, verifier, plan)
        trials_at = len(plan.passes)
        current = _apply_precision(spec, graph, verifier, plan)
    best = _time_stages(model, current, spec, verifier, plan, device)
    for report in spec.unavailable:
        warn_drop(report.name, str(report.error))
    plan.passes[trials_at:trials_at] = [PassReport(**vars(r)) for r in spec.unavailable]
    if graph is not None:
        best = _try_passes(spec, graph, best, verifier, plan, device, trials_at + len(spec.unavailable), graph_tolerance)
    plan.stage, plan.stage_passes = best.stage, best.stage_passes
    _finalize(plan, best.fn, verifier)
    return best.fn


def _time_stages(
    model: nn.Module, current: nn.Module | None, spec: Spec, verifier: Verifier, plan: Plan, device: torch.device
) -> _Best:
    """Build every stage on ``current`` (``None``: no graph) and time it against eager."""
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
    best: _Best | None = None
    for name, fn, reports in candidates:
        err, out = verifier.error(fn)
        ok = name == "eager" or err <= plan.tolerance  # eager is the model itself: always acceptable
        entry = {"name": name, "status": "ok" if ok else "dropped", "max_rel_error": err,
                 "top1_agreement": top1_agreement(out, verifier.reference),
                 "changes": [c for r in reports for c in r.changes]}
        (once,) = median_ms([fn], verifier.inputs, runs=1, warmup=0, device=device)
        if best is not None and once > SLOW_FACTOR * best.ms:
            # Far slower than the best so far even counting noise: not worth timing fully.
            plan.candidates.append({**entry, "status": "slow", "median_ms": round(once, 3)})
            continue
        (ms,) = median_ms([fn], verifier.inputs, runs=spec.runs, warmup=spec.warmup, device=device)
        plan.candidates.append({**entry, "median_ms": round(ms, 3)})
        if ok and (best is None or ms < best.ms):
            best = _Best(ms, name, fn, reports)
    assert best is not None  # eager is always acceptable
    return best


def _try_passes(
    spec: Spec, graph: nn.Module, best: _Best, verifier: Verifier, plan: Plan, device: torch.device,
    at: int, tolerance: float,
) -> _Best:
    """Step 3 of the search: keep each trial pass that verifies and makes the pipeline faster."""
    stage = next((s for s in spec.stages if s.name == best.stage), Stage("fx"))  # eager: the plain graph
    for gp in spec.trial_passes:
        out, report = verifier.apply(gp, graph, tolerance)
        plan.passes.insert(at, report)
        at += 1
        if out is None:
            continue
        fn, stage_passes, why = _rebuild(spec, out, stage, verifier, plan)
        if fn is None:
            report.status, report.error = "dropped", why
            warn_drop(gp.name, why)
            continue
        with_it, without = call_ms([fn, best.fn], verifier.inputs, runs=spec.runs, warmup=spec.warmup, device=device)
        ms_with, ms_without = median(with_it), median(without)
        report.ms_with, report.ms_without = round(ms_with, 3), round(ms_without, 3)
        # Kept only when faster by more than the timing noise: a pass that changes nothing
        # would otherwise be kept or not by chance (and the decision cached).
        if clear_gain(with_it, without)[0]:
            graph, best = out, _Best(ms_with, stage.name, fn, stage_passes)
        else:
            report.status = "not-faster"
    return best


def _rebuild(
    spec: Spec, graph: nn.Module, stage: Stage, verifier: Verifier, plan: Plan
) -> tuple[Callable[..., Any] | None, list[PassReport], str]:
    """The rest of the pipeline (precision if it was kept, then ``stage``) on ``graph``:
    ``(module, stage reports, "")``, or ``(None, [], why)`` when a step fails on it."""
    pp = spec.precision_pass()
    if pp is not None and any(r.name == pp.name and r.status == "applied" for r in plan.passes):
        out, report = verifier.apply(pp, graph, plan.tolerance)
        if out is None:
            return None, [], f"the {pp.name} pass failed on its graph ({report.error or report.status})"
        graph = out
    built, reports, status = _run_stage(stage, graph, verifier, plan.tolerance)
    if built is None:
        return None, [], f"stage {stage.name} failed on its graph ({status})"
    return built, reports, ""


# --------------------------------------------------------------------------- named passes, replay


def _pipeline(model: nn.Module, spec: Spec, verifier: Verifier, plan: Plan) -> Callable[..., Any]:
    graph = _capture(model, verifier, plan)
    current = None if graph is None else _apply_precision(spec, _apply(spec.graph_passes, graph, verifier, plan), verifier, plan)
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
    pp = spec.precision_pass()
    by_name = {p.name: p for p in (*spec.graph_passes, *spec.trial_passes)}
    if any(n not in by_name and (pp is None or n != pp.name) for n in kept):
        return None
    plan.candidates = list(decision.get("candidates", []))
    fn: Callable[..., Any] = model
    if stage_name != "eager":
        stage = next((s for s in spec.stages if s.name == stage_name), Stage("fx") if stage_name == "fx" else None)
        graph = None if stage is None else _capture(model, verifier, plan)
        if stage is None or graph is None:
            return None
        graph = _apply([by_name[n] for n in kept if n in by_name], graph, verifier, plan)
        if pp is not None and pp.name in kept:
            graph = _apply_precision(spec, graph, verifier, plan)
        built, plan.stage_passes, _ = _run_stage(stage, graph, verifier, plan.tolerance)
        if built is None:
            return None
        fn = built
    err, _ = verifier.error(fn)
    if not err <= plan.tolerance:
        return None
    plan.stage = str(stage_name)
    _finalize(plan, fn, verifier)
    return fn
