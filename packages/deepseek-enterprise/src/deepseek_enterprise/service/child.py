"""The wrapper every job runs under: ``python -I -m deepseek_enterprise.service.child ARGS``.

It runs ``python -I -m deepseek ARGS`` in the same process group, cgroup and working directory
(``python -I -m deepseek_enterprise.service.gpucap ARGS`` instead when the job holds a share of
a GPU: ``DEEPSEEK_GPU_MEMORY_FRACTION`` is set; the wrapper itself never imports torch), waits,
and exits with the job's code. Before that it writes, atomically, ``exit_reason`` when it can say
why the job failed (:func:`explain`: out of memory, GPU memory over the job's share, CPU time)
and then ``exit_code``: the files let a restarted server learn how a job that outlived it ended.
SIGTERM reaches the whole group (the job stops cleanly, ``deepseek train`` writes a checkpoint
and exits 75); the wrapper itself only waits for the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from deepseek_enterprise.service.gpushare import ENV

OUT_OF_MEMORY = "error: out of memory"
"""How ``deepseek`` reports an allocation that failed (exit code 2): MemoryError, torch's CPU
allocator, or a GPU's (``deepseek.cli.main.out_of_memory``)."""
SIGXCPU_CODE = 128 + signal.SIGXCPU


def _log_tail(path: Path, size: int = 16384) -> list[str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - size))
        return f.read().decode("utf-8", "replace").splitlines()


def explain(code: int, log: Path, gpu_fraction: str | None) -> str:
    """Why a job that exited with ``code`` failed, from its code and the end of its log ('' when
    the code says all)."""
    if code == SIGXCPU_CODE:
        return "CPU time limit reached (quota cpu-seconds): the kernel stopped the job with SIGXCPU"
    if code != 2:
        return ""
    line = next((x for x in reversed(_log_tail(log)) if x.startswith(OUT_OF_MEMORY)), None)
    if line is None:
        return ""
    detail = " ".join(line[len(OUT_OF_MEMORY):].split())[:300]
    if gpu_fraction and ("CUDA" in detail or "GPU" in detail):
        return f"out of GPU memory: the job's share is {gpu_fraction} of each GPU (quota gpu-memory-fraction) {detail}"
    return f"out of memory {detail}"


def _write_atomic(name: str, text: str) -> None:
    with open(f"{name}.tmp", "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f"{name}.tmp", name)


def main(argv: list[str]) -> int:
    # The group's SIGTERM is the job's to handle (exec gives the job the default handlers back).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    fraction = os.environ.get(ENV) or None
    module = "deepseek_enterprise.service.gpucap" if fraction else "deepseek"
    child = subprocess.Popen([sys.executable, "-I", "-m", module, *argv])
    code = child.wait()
    if code < 0:
        code = 128 - code
    reason = explain(code, Path("job.log"), fraction)
    _write_atomic("exit_reason", f"{reason}\n" if reason else "")  # always: a file the job left is replaced
    _write_atomic("exit_code", f"{code}\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
