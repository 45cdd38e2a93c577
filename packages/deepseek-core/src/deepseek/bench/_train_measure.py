"""Measuring one training loop for ``bench train``: timing, peak memory, host syncs, MFU."""

from __future__ import annotations

import contextlib
import functools
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
    process's switches exactly as they were, so that an in-process caller's float32 work (a test,
    a notebook's next cell) keeps its precision: the legacy ones (the matmul precision, ``medium``
    included, and cuDNN's ``allow_tf32``: :func:`_legacy_switches`) and on torch >= 2.9 each
    ``fp32_precision`` one as it was set (``"none"`` where it inherits: :func:`_fp32_settings`)."""
    import torch

    switches = _fp32_switches(torch)
    settings = _fp32_settings(switches)
    matmul, conv = _legacy_switches(torch)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        if conv is not None:
            torch.backends.cudnn.allow_tf32 = conv
        for (_, put, _), value in zip(switches, settings, strict=True):  # after: the legacy setters write some
            put(value)


def _legacy_switches(torch: Any) -> tuple[str, bool | None]:
    """The matmul precision and cuDNN's ``allow_tf32``. On torch >= 2.9 the two reads refuse
    where the ``fp32_precision`` switches were set apart from them ("a mix of the legacy and new
    APIs", e.g. after ``cudnn.conv.fp32_precision = "ieee"`` alone); the value is then told from
    which of torch's agreement checks fails, as those checks are written: ``None`` for cuDNN's
    where its conv and RNN switches differ (any value fails then)."""
    try:
        matmul = torch.get_float32_matmul_precision()
    except RuntimeError:  # "highest" or not: from cuBLAS's check, which passes where that and its tf32 agree
        cublas = torch._C._get_fp32_precision_getter("cuda", "matmul") == "tf32"
        if _readable(lambda: torch.backends.cuda.matmul.allow_tf32) == cublas:
            # not highest; then only oneDNN's refuses: its bf16 all but medium, its tf32 all but high
            matmul = "high" if torch._C._get_fp32_precision_getter("mkldnn", "matmul") == "bf16" else "medium"
        else:
            matmul = "highest"
    try:
        return matmul, torch.backends.cudnn.allow_tf32
    except RuntimeError:  # refused where conv, RNN and allow_tf32 do not all agree
        conv, rnn = (torch._C._get_fp32_precision_getter("cuda", op) == "tf32" for op in ("conv", "rnn"))
        return matmul, (not conv if conv == rnn else None)


def _readable(read: Callable[[], Any]) -> bool:
    """Whether torch answers ``read`` (it refuses a legacy switch the new ones disagree with)."""
    try:
        read()
    except RuntimeError:
        return False
    return True


_FP32_SWITCHES: tuple[tuple[str, str, int | None], ...] = (
    ("generic", "all", None), ("cuda", "all", 0), ("cuda", "matmul", 1), ("cuda", "conv", 1), ("cuda", "rnn", 1),
    ("mkldnn", "all", 0), ("mkldnn", "matmul", 5), ("mkldnn", "conv", 5), ("mkldnn", "rnn", 5))
"""torch >= 2.9's ``fp32_precision`` switches as (backend, op), parents first, each with the index
of the one it inherits from where it is ``"none"`` (an op's: its backend's; a backend's: the
generic one). Read and set through torch's own two functions behind the attributes: torch 2.11's
``torch.backends.mkldnn.fp32_precision`` setter writes the generic switch."""


def _fp32_switches(torch: Any) -> list[tuple[Callable[[], str], Callable[[str], None], int | None]]:
    """Each switch of :data:`_FP32_SWITCHES` as (read, set, parent); none before torch 2.9."""
    if torch.__version__ < (2, 9):
        return []
    get, put = torch._C._get_fp32_precision_getter, torch._C._set_fp32_precision_setter
    return [(functools.partial(get, backend, op), functools.partial(put, backend, op), parent)
            for backend, op, parent in _FP32_SWITCHES]


def _fp32_settings(switches: list[tuple[Callable[[], str], Callable[[str], None], int | None]]) -> list[str]:
    """Each switch's own setting, ``"none"`` where it inherits. torch reads a switch's value with
    ``"none"`` resolved through its parents, so one that reads as its parent does is told apart
    by moving the parent for a moment (to a value it does not have) and back to its own setting:
    it follows (``"none"``) or it stays (set)."""
    settings: list[str] = []
    for read, _, parent in switches:
        value = read()
        if parent is not None and value == switches[parent][0]():
            _, move, _ = switches[parent]
            move(other := "tf32" if value == "ieee" else "ieee")
            follows = read() == other
            move(settings[parent])
            value = "none" if follows else value
        settings.append(value)
    return settings


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
