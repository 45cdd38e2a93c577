"""Devices: the one syntax check and the one availability check of device names (``auto``,
``cpu``, ``cuda``, ``cuda:N``), used by ``[strategy] device`` of ``single`` and by every command
taking ``--device`` (through :class:`deepseek.cli.params.Device`); and the CPU cores a process
may use, with the default number of intra-op threads of the commands that run a model.
Imports torch only to resolve a device or set the threads.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING

from deepseek.errors import ConfigError

if TYPE_CHECKING:
    import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)\Z")  # not $: it let "cpu\n" past, to torch.device


def device_problem(spec: str, *, allow_auto: bool = True) -> str | None:
    """Why ``spec`` is not a device name (``None`` when it is one)."""
    if _DEVICE_RE.match(spec) and (allow_auto or spec != "auto"):
        return None
    allowed = "'auto', 'cpu', 'cuda', 'cuda:N'" if allow_auto else "'cpu', 'cuda', 'cuda:N'"
    return f"is not allowed; allowed values: {allowed}"


def resolve_device(spec: str, where: str = "strategy.device") -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda[:N]`` into a device this machine has, with a one-line
    ConfigError naming ``where`` when the name is malformed or the device absent."""
    import torch

    problem = device_problem(spec)
    if problem:
        raise ConfigError(f"{where}: {spec!r} {problem}")
    if spec == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: {spec!r} but no CUDA device is available; use 'cpu'")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{where}: {spec!r} but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
        device = torch.device("cuda", index)
    return device


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_cpu_threads() -> int:
    """Intra-op threads of a command when ``OMP_NUM_THREADS`` is unset: half the cores (at least
    one). With every core in use, OpenMP's threads wait on each other whenever another process
    takes a core; measured on 2 cores (BENCHMARKS.md, "CPU threads"), 2 threads trained 1.5x
    faster than 1 on a quiet machine but 2.8x slower while another job ran."""
    return max(1, available_cores() // 2)


def use_default_cpu_threads() -> int | None:
    """Set torch's intra-op threads to :func:`default_cpu_threads` unless ``OMP_NUM_THREADS``
    chooses them (as ``deepseek launch`` does for its workers); returns the number set, if any."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    threads = default_cpu_threads()
    torch.set_num_threads(threads)
    return threads


class _CudaHomeNote(logging.Filter):
    """Drops the warning torch's C++ extension module logs when it is imported on a machine without
    CUDA ("No CUDA runtime is found, using CUDA_HOME=..."): inductor and DeepSpeed's op builder
    import it on the CPU too, where it says nothing a run can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No CUDA runtime is found")


def hold_back_cuda_home_note() -> None:
    """Install :class:`_CudaHomeNote` on torch's ``torch.utils.cpp_extension`` logger (once)."""
    log = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _CudaHomeNote) for f in log.filters):
        log.addFilter(_CudaHomeNote())
