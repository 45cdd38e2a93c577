"""What machine the advice is for: GPU count and memory, host memory, memory-size parsing.

Detection order: ``torch.cuda`` when torch is importable, else ``nvidia-smi``, else the CPU.
torch is imported only here and only when detection is needed.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from deepseek.errors import UsageError

_UNITS = {
    "": 1024**3,  # a bare number means GiB
    "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str, *, option: str = "size", allow_zero: bool = False) -> int:
    """Bytes in ``text``: ``80GiB``, ``80GB`` (10^9), ``512MiB``, ``80G`` (binary), ``80`` (GiB)."""
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise UsageError(
            f"{option}: cannot read memory size {text!r}; write a number with a unit, e.g. 80GiB, 80GB or 512MiB"
        )
    value = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(value):
        raise UsageError(f"{option}: memory size {text!r} is too large; write a size such as 80GiB")
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{option}: memory size must be positive, got {text!r}")
    return int(value)


def format_gib(n: float) -> str:
    """``n`` bytes as GiB with two decimals."""
    return f"{n / 1024**3:.2f}"


@dataclass(frozen=True)
class Devices:
    """The accelerators the advice is for. ``count == 0`` means CPU only."""

    count: int
    memory: int
    name: str
    source: str

    @property
    def kind(self) -> str:
        """``cuda`` or ``cpu``."""
        return "cuda" if self.count else "cpu"


def host_memory() -> int | None:
    """Total RAM of this machine in bytes (``None`` if unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _from_torch() -> Devices | None:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return None
    props = torch.cuda.get_device_properties(0)
    return Devices(torch.cuda.device_count(), int(props.total_memory), props.name, "torch.cuda")


def _from_nvidia_smi() -> Devices | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=15, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.rsplit(",", 1) for line in out.strip().splitlines() if "," in line]
    if not rows:
        return None
    try:
        memory = int(float(rows[0][1])) * 1024**2  # MiB
    except ValueError:
        return None
    return Devices(len(rows), memory, rows[0][0].strip(), "nvidia-smi")


def detect_devices(*, keep_cuda_idle: bool = False) -> Devices:
    """GPUs of this machine (torch.cuda, else nvidia-smi), else the CPU with host RAM.
    ``keep_cuda_idle``: ask nvidia-smi first, so that a process which only plans work for child
    processes (``deepseek tune``) does not initialise CUDA and hold GPU memory itself."""
    found = (_from_nvidia_smi() or _from_torch()) if keep_cuda_idle else (_from_torch() or _from_nvidia_smi())
    if found is not None:
        return found
    return Devices(0, host_memory() or 0, "CPU", "host RAM")


MAX_GPUS = 1 << 20
"""The most GPUs the advisor takes (1,048,576, about ten times the largest training clusters built
by 2026, some 100,000 GPUs): its figures are per GPU for one job, and a count beyond any machine
(a mistyped ``--gpus 1000000000``) is refused rather than estimated. Even so, the largest model it
takes (``MAX_PARAMS``, 1e15 parameters, 16 PB of mixed-precision model states) sharded over this
many GPUs is 14 GiB a GPU, so the two bounds do not cut each other short."""


def resolve_devices(gpus: int | None, gpu_memory: str | None) -> Devices:
    """Combine ``--gpus`` / ``--gpu-memory`` with detection (detect only what is not given)."""
    if gpus is not None and gpus < 0:
        raise UsageError(f"--gpus: must be 0 (CPU) or more, got {gpus}")
    if gpus is not None and gpus > MAX_GPUS:
        raise UsageError(f"--gpus: {gpus:,} GPUs is beyond what the advisor models (at most {MAX_GPUS:,}, about ten "
                         "times the largest training clusters); give the number of GPUs the job will train on")
    memory = parse_size(gpu_memory, option="--gpu-memory") if gpu_memory is not None else None
    if gpus == 0:
        return Devices(0, memory or host_memory() or 0, "CPU", "user" if memory else "host RAM")
    if gpus is not None and memory is not None:
        return Devices(gpus, memory, "GPU", "user")
    detected = detect_devices()
    if detected.count == 0:
        if gpus is None and memory is None:
            return detected
        if memory is None:
            raise UsageError(
                f"--gpu-memory: no GPU detected on this machine to read the memory of {gpus} GPU(s); "
                "give it, e.g. --gpu-memory 80GiB"
            )
        return Devices(gpus or 1, memory, "GPU", "user")
    return Devices(
        gpus if gpus is not None else detected.count,
        memory if memory is not None else detected.memory,
        detected.name,
        detected.source if memory is None else "user",
    )
