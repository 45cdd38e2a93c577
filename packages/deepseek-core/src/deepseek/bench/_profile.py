"""Where a training step's GPU time goes: ``bench train --profile``.

Runs a few steps under ``torch.profiler`` (CUDA activity only) and sums each kernel's device time
into categories by kernel name. The categories answer "what is left" after an MFU run: matrix
products, attention, fused elementwise/normalisation code, the optimizer and clipping
(multi-tensor kernels), communication, copies, and the idle gap (step time minus busy time;
negative when communication overlaps compute).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any

# First match wins; patterns are matched against the kernel name, case-insensitive.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("communication", r"nccl|gloo"),
    ("attention", r"flash|fmha|cudnn.*(sdpa|attn|fprop|bprop|dot_do_o)|attention|sdpa"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|cublas|sm\d+_.*(tensorop|wgmma)|_mm_|triton_tem_fused_mm|mm_kernel"),
    ("optimizer + clipping", r"adam|multi_tensor|foreach|lpnorm|(?<!layer_)norm_kernel"),
    ("fused elementwise / norm (compiled)", r"^triton_"),
    ("elementwise / norm (eager)", r"elementwise|vectorized|reduce|layer_?norm|gammabeta|softmax|gelu|cross_entropy|nll"),
    ("copies / memset", r"memcpy|memset|copy|cat"),
)


def categorize(kernel: str) -> str:
    """The category of one kernel name (``other`` when no pattern matches)."""
    for category, pattern in CATEGORIES:
        if re.search(pattern, kernel, re.IGNORECASE):
            return category
    return "other"


Interval = tuple[float, float, str]


def _union(intervals: list[Interval]) -> list[tuple[float, float]]:
    """Merged ``(start, end)`` spans covered by any interval."""
    spans: list[tuple[float, float]] = []
    for start, end, _ in sorted(intervals):
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _covered(spans: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in spans)


def timeline(kernels: list[Interval], steps: int, top: int = 8) -> dict[str, Any]:
    """What the kernel timeline says beyond per-kernel sums (times in microseconds in, ms out):
    GPU idle gaps (no kernel running) and the largest of them with the kernels on either side,
    and communication that no compute kernel overlaps (``exposed_communication_ms``)."""
    if not kernels:
        return {"gaps_ms": 0.0, "largest_gaps": [], "exposed_communication_ms": 0.0}
    ordered = sorted(kernels)
    spans = _union(ordered)
    starts = [start for start, _, _ in ordered]
    ends = sorted((end, name) for _, end, name in ordered)
    end_times = [end for end, _ in ends]
    gaps = []
    for (_, prev_end), (next_start, _) in zip(spans, spans[1:], strict=False):
        before = ends[bisect.bisect_right(end_times, prev_end) - 1][1]
        after = ordered[bisect.bisect_left(starts, next_start)][2]
        gaps.append((next_start - prev_end, before, after))
    comm = [k for k in ordered if categorize(k[2]) == "communication"]
    compute = _union([k for k in ordered if categorize(k[2]) != "communication"])
    comm_spans = _union(comm)
    both = 0.0
    for a0, a1 in comm_spans:  # overlap of the two span lists
        for b0, b1 in compute:
            both += max(0.0, min(a1, b1) - max(a0, b0))
    return {
        "gaps_ms": sum(g for g, _, _ in gaps) / steps / 1e3,
        "largest_gaps": [{"ms": g / 1e3, "after": b[:100], "before": a[:100]}
                         for g, b, a in sorted(gaps, key=lambda t: -t[0])[:top]],
        "exposed_communication_ms": (_covered(comm_spans) - both) / steps / 1e3,
    }


def profile_steps(step: Callable[[int], Any], first: int, steps: int, step_time_s: float) -> dict[str, Any]:
    """Profile ``steps`` calls of ``step`` (CUDA kernels) and return per-step milliseconds per
    category, the busy total, the idle gap against ``step_time_s``, the top kernels and the
    timeline's gaps and exposed communication (:func:`timeline`)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(first + i)
        torch.cuda.synchronize()
    per_kernel: dict[str, float] = {}
    kernels: list[Interval] = []
    for event in prof.events():
        if getattr(event, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        per_kernel[event.name] = per_kernel.get(event.name, 0.0) + event.device_time_total / 1e3
        span = getattr(event, "time_range", None)
        if span is not None:
            kernels.append((float(span.start), float(span.end), event.name))
    totals: dict[str, float] = {}
    for name, ms in per_kernel.items():
        totals[categorize(name)] = totals.get(categorize(name), 0.0) + ms / steps
    busy = sum(totals.values())
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:15]
    return {
        "steps": steps,
        "step_ms": step_time_s * 1e3,
        "busy_ms": busy,
        "idle_ms": step_time_s * 1e3 - busy,
        "categories_ms": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
        "top_kernels_ms": [{"name": n[:160], "ms_per_step": ms / steps} for n, ms in top],
        **timeline(kernels, steps),
    }


def print_profile(result: dict[str, Any]) -> None:
    """The category table of :func:`profile_steps` (rich)."""
    from rich.console import Console
    from rich.table import Table

    step = result["step_ms"]
    table = Table(title=f"GPU time per step by kernel category ({result['steps']} profiled steps; "
                  f"mean step {step:.1f} ms)", title_justify="left")
    for col in ("category", "ms per step", "share of step"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, ms in result["categories_ms"].items():
        table.add_row(name, f"{ms:.1f}", f"{ms / step:.1%}")
    table.add_row("idle (step - busy)", f"{result['idle_ms']:.1f}", f"{result['idle_ms'] / step:.1%}")
    console = Console(width=140)
    console.print(table)
    if "gaps_ms" in result:
        console.print(f"timeline: {result['gaps_ms']:.1f} ms per step with no kernel running; communication "
                      f"not overlapped by compute: {result['exposed_communication_ms']:.1f} ms per step")
        for gap in result["largest_gaps"][:5]:
            console.print(f"  gap {gap['ms']:.2f} ms after {gap['after'][:60]!r} before {gap['before'][:60]!r}")
