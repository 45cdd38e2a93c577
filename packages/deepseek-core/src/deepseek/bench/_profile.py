"""Where a training step's GPU time goes: ``bench train --profile``.

Runs a few steps under ``torch.profiler`` (CUDA activity only) and sums each kernel's device time
into categories by kernel name. The categories answer "what is left" after an MFU run: matrix
products, attention, fused elementwise/normalisation code, the optimizer and clipping
(multi-tensor kernels), communication, copies, and the idle gap (step time minus busy time;
negative when communication overlaps compute).
"""

from __future__ import annotations

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


def profile_steps(step: Callable[[int], Any], first: int, steps: int, step_time_s: float) -> dict[str, Any]:
    """Profile ``steps`` calls of ``step`` (CUDA kernels) and return per-step milliseconds per
    category, the busy total, the idle gap against ``step_time_s`` and the top kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(first + i)
        torch.cuda.synchronize()
    per_kernel: dict[str, float] = {}
    for event in prof.events():
        if getattr(event, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        per_kernel[event.name] = per_kernel.get(event.name, 0.0) + event.device_time_total / 1e3
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
    }


def print_profile(result: dict[str, Any]) -> None:
    """The category table of :func:`profile_steps` (rich)."""
    from rich.console import Console
    from rich.table import Table

    step = result["step_ms"]
    table = Table(title=f"GPU time per step by kernel category ({result['steps']} profiled steps; "
                  f"median step {step:.1f} ms)", title_justify="left")
    for col in ("category", "ms per step", "share of step"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, ms in result["categories_ms"].items():
        table.add_row(name, f"{ms:.1f}", f"{ms / step:.1%}")
    table.add_row("idle (step - busy)", f"{result['idle_ms']:.1f}", f"{result['idle_ms'] / step:.1%}")
    Console(width=140).print(table)
