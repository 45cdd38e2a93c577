"""The wrapper every job runs under: ``python -I -m deepseek_enterprise.service.child --state DIR
ARGS``, ``DIR`` the job's server-owned state folder (``jobstate``: outside every tenant folder).

First it writes ``DIR/started`` (its pid and start time, ``SLURM_JOB_ID`` under Slurm, the
machine's boot id): the job
was launched, which is how a server killed while starting it finds it again. Then it runs
``python -I -m deepseek ARGS`` in the same process group, cgroup and working directory (``python
-I -m deepseek_enterprise.service.gpucap ARGS`` instead when the job holds a share of a GPU:
``DEEPSEEK_GPU_MEMORY_FRACTION`` is set; the wrapper itself never imports torch), with every
descriptor but stdin/stdout/stderr closed (the launch lock it inherited stays the wrapper's),
waits, and exits with the job's code. Before that it writes ``DIR/exit_reason`` when it can say
why the job failed (:func:`explain`: out of memory, GPU memory over the job's share, CPU time),
then ``DIR/exit_code``: they let a restarted server (and the Slurm executor) learn how a job
ended. SIGTERM reaches the whole group (the job stops cleanly, ``deepseek train`` writes a
checkpoint and exits 75); the wrapper itself only waits for the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from deepseek.parsing import read_tail
from deepseek_enterprise.service import jobstate
from deepseek_enterprise.service.gpushare import ENV

OUT_OF_MEMORY = "error: out of memory"
"""How ``deepseek`` reports an allocation that failed (exit code 2): MemoryError, torch's CPU
allocator, or a GPU's (``deepseek.cli.main.out_of_memory``)."""
SIGXCPU_CODE = 128 + signal.SIGXCPU


def _log_tail(path: Path, size: int = 16384) -> list[str]:
    try:  # a regular file only, never through a link the job put there: a FIFO in its place must not keep the wrapper from exiting
        return read_tail(path, size, follow_links=False).splitlines()
    except OSError:
        return []


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


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "--state" or not os.path.isdir(argv[1]) or os.path.islink(argv[1]):
        print("deepseek job wrapper: usage: --state DIR COMMAND ARGS (DIR: the job's state folder)", file=sys.stderr)
        return 2
    state, argv = Path(argv[1]), argv[2:]
    pid = os.getpid()
    jobstate.write(state, jobstate.STARTED,
                   jobstate.marker_text(pid, jobstate.process_start(pid), os.environ.get("SLURM_JOB_ID"),
                                         jobstate.boot_id()))
    # The group's SIGTERM is the job's to handle (exec gives the job the default handlers back).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    fraction = os.environ.get(ENV) or None
    module = "deepseek_enterprise.service.gpucap" if fraction else "deepseek"
    child = subprocess.Popen([sys.executable, "-I", "-m", module, *argv], close_fds=True)
    code = child.wait()
    if code < 0:
        code = 128 - code
    reason = explain(code, Path("job.log"), fraction)
    jobstate.write(state, jobstate.EXIT_REASON, f"{reason}\n" if reason else "")  # always: none left from before
    jobstate.write(state, jobstate.EXIT_CODE, f"{code}\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
