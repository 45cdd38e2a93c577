"""A shared-GPU job's entry point: ``python -I -m deepseek_enterprise.service.gpucap ARGS``.

The job wrapper (:mod:`.child`) runs this instead of ``python -I -m deepseek`` when the job
holds a share of its GPUs (``DEEPSEEK_GPU_MEMORY_FRACTION`` set, see :mod:`.gpushare`). Before
any of the job's code runs it caps PyTorch's CUDA caching allocator of this process to that
fraction of each visible device's memory (``torch.cuda.set_per_process_memory_fraction``), then
runs ``deepseek ARGS`` in the same process. An allocation past the cap raises PyTorch's
out-of-memory error in the job (which ``deepseek`` reports as ``error: out of memory``), not in
the other jobs on the GPU. When the job exits, one line of its log gives the peak memory PyTorch
allocated and reserved (:data:`PEAK`, all its devices together).

What the cap does not cover: memory outside PyTorch's allocator (the CUDA context, cuBLAS and
NCCL workspaces, other libraries), and processes the job starts itself (they inherit the
variable but not the cap unless they apply it). Without a visible CUDA device it says so and
runs the job uncapped.
"""

from __future__ import annotations

import atexit
import os
import sys

from deepseek_enterprise.service.gpushare import ENV, check_fraction

PEAK = "[deepseek server] peak GPU memory (GiB): allocated {allocated:.3f}, reserved {reserved:.3f}"
"""The line logged at exit (GiB, all visible devices together)."""


def _report_peak(n: int) -> None:
    import torch

    allocated = sum(torch.cuda.max_memory_allocated(i) for i in range(n)) / 2**30
    reserved = sum(torch.cuda.max_memory_reserved(i) for i in range(n)) / 2**30
    print(PEAK.format(allocated=allocated, reserved=reserved), file=sys.stderr, flush=True)


def apply_cap(fraction: float) -> str:
    """Cap this process's CUDA allocator on every visible device; the line to log."""
    import torch

    if not torch.cuda.is_available():
        return f"GPU memory cap {fraction:g} not applied: no CUDA device is visible"
    n = torch.cuda.device_count()
    for i in range(n):
        torch.cuda.set_per_process_memory_fraction(fraction, i)
    total = sum(torch.cuda.get_device_properties(i).total_memory for i in range(n))
    atexit.register(_report_peak, n)
    return f"GPU memory cap: {fraction:g} of each of {n} visible device(s) ({fraction * total / 2**30:.1f} GiB in all)"


def main(argv: list[str]) -> None:
    try:
        fraction = check_fraction(os.environ.get(ENV, ""), ENV)
    except ValueError as exc:
        print(f"[deepseek server] error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"[deepseek server] {apply_cap(fraction)}", file=sys.stderr, flush=True)
    from deepseek.cli.main import main as deepseek_main

    deepseek_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
