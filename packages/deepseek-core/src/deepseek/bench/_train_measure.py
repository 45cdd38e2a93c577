"""Measuring one training loop for ``bench train``: timing, peak memory, host syncs, MFU."""

from __future__ import annotations

import contextlib
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def tf32() -> Iterator[None]:
    """TF32 matmuls and cuDNN convolutions while ``bench train`` measures (its numbers are taken
    with them; the peak of an fp32 run is the TF32 one); after, however the bench ended, the
    process's switches as they were (the matmul precision, ``medium`` included, and cuDNN's), so
    that an in-process caller's float32 work (a test, a notebook's next cell) keeps its precision.
    These are the switches every supported torch has; torch >= 2.9's finer ``fp32_precision``
    ones are not read: a process that set those gets them back as these setters map them."""
    import torch

    precision, conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = conv


# Dense peak TFLOP/s (no sparsity) by device-name pattern: (16-bit, TF32). First match wins.
_PEAKS: tuple[tuple[str, float, float], ...] = (
    (r"H100.*PCIe", 756.0, 378.0),
    (r"H200|H100|GH200", 989.0, 494.7),
    (r"A100", 312.0, 156.0),
)


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Dense peak of ``device_name`` for ``precision`` (bf16/fp16: tensor-core 16-bit; fp32:
    TF32), ``None`` when unknown (CPU, other GPUs)."""
    for pattern, half, tf32 in _PEAKS:
        if re.search(pattern, device_name):
            return tf32 if precision == "fp32" else half
    return None


@dataclass
class Row:
    """One measured variant."""

    name: str
    path: str
    compile: bool
    steps: int
    median_step_s: float
    mean_step_s: float
    """Mean of the timed steps (CUDA events, or ``perf_counter`` on the CPU): tokens/s and MFU."""
    wall_step_s: float
    tokens_per_s: float
    tflops: float
    mfu: float | None
    peak_memory_bytes: int
    memory_kind: str
    loss_first: float
    loss_last: float
    host_syncs_per_step: float
    step_times_s: list[float] = field(default_factory=list)


def _rss_peak_reset() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def _rss_peak() -> int:
    with contextlib.suppress(OSError, AttributeError):
        found = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if found:
            return int(found.group(1)) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _count_syncs(step: Callable[[int], Any], first: int, window: int) -> float:
    """Host syncs per step over ``window`` more (untimed) CUDA steps, from
    ``torch.cuda.set_sync_debug_mode``."""
    import warnings

    import torch

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(first, first + window):
                step(i)
            torch.cuda.set_sync_debug_mode("default")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / window


def measure(step: Callable[[int], Any], s: Any, device: Any, syncs: float, window: int = 1) -> tuple[Any, ...]:
    """Run warm-up then measured steps; return step times, wall mean, peak memory, losses and
    the host syncs per step (counted on CUDA after the timing over ``window`` steps, the
    read interval; ``syncs`` on the CPU)."""
    import torch

    cuda = device.type == "cuda"
    losses = [step(i) for i in range(s.warmup)]
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(s.steps + 1)]
        events[0].record()
    else:
        _rss_peak_reset()
        marks = [time.perf_counter()]
    start = time.perf_counter()
    for i in range(s.steps):
        losses.append(step(s.warmup + i))
        if cuda:
            events[i + 1].record()
        else:
            marks.append(time.perf_counter())
    if cuda:
        torch.cuda.synchronize(device)
        times = [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(s.steps)]
        peak = torch.cuda.max_memory_allocated(device)
    else:
        times = [b - a for a, b in zip(marks, marks[1:], strict=False)]
        peak = _rss_peak()
    wall = (time.perf_counter() - start) / s.steps
    if cuda:
        done = s.warmup + s.steps
        syncs = _count_syncs(step, done + (-done) % window, window)  # one whole read window
    return times, wall, peak, losses, syncs


def make_row(name: str, path: str, compiled: bool, s: Any, measured: Any,
         flops_per_token: int, tokens_per_step: int, peak: float | None, kind: str) -> Row:
    times, wall, mem, losses, syncs = measured
    # The mean, not the median: with batched loss reads only some steps wait for the host.
    mean = sum(times) / len(times)
    tps = tokens_per_step / mean
    values = [float(v) for v in losses]
    return Row(
        name=name, path=path, compile=compiled, steps=s.steps, median_step_s=statistics.median(times),
        mean_step_s=mean, wall_step_s=wall,
        tokens_per_s=tps, tflops=tps * flops_per_token / 1e12,
        mfu=(tps * flops_per_token / (peak * 1e12)) if peak else None, peak_memory_bytes=int(mem),
        memory_kind=kind, loss_first=values[0], loss_last=values[-1], host_syncs_per_step=syncs,
        step_times_s=times,
    )
