"""CUDA-event timing shared by the GPU benchmark scripts in this folder (run as
``python benchmarks/NAME.py``, so this module is importable beside them)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Mean milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls, by CUDA events
    around the whole loop (one synchronisation at each end)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats
