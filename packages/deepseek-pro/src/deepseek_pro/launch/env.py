"""The environment every worker of ``deepseek launch`` starts with.

Variables the user already set are kept; the launcher only fills in what is missing:

- ``OMP_NUM_THREADS``: the CPU cores this launcher may use divided by the local processes (at
  least 1), so N workers do not each start one thread per core and thrash;
- ``DS_ACCELERATOR=cpu`` when no CUDA device is visible (DeepSpeed otherwise probes for one);
- ``PYTHONUNBUFFERED=1``: worker logs arrive line by line, so a failure report's log tail is
  current;
- ``DEEPSEEK_HEARTBEAT_DIR``: where workers write heartbeats for the hang watchdog;
- ``DEEPSEEK_LAUNCHER_PID``: the launcher's pid, so a worker whose launcher is already gone when
  it starts exits at once (:mod:`deepseek_pro.launch.worker`);
- ``TORCH_CUDA_ARCH_LIST``: when set, entries that are not compute capabilities (``8.0``,
  ``9.0a``, ``8.6+PTX``) are dropped (the variable is removed when none is left), because a
  malformed list breaks DeepSpeed's op builder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from deepseek.devices import available_cores
from deepseek_pro.launch.heartbeat import ENV_DIR

ENV_LAUNCHER_PID = "DEEPSEEK_LAUNCHER_PID"
_ARCH = re.compile(r"^\d+\.\d+[a-z]?(\+PTX)?\Z")


def sanitize_arch_list(value: str) -> str:
    """``TORCH_CUDA_ARCH_LIST`` with only well-formed entries (``;`` or space separated)."""
    parts = [p.strip() for p in re.split(r"[;\s]+", value) if p.strip()]
    return ";".join(p for p in parts if _ARCH.match(p))


def worker_env(
    nproc_per_node: int,
    *,
    cuda: bool,
    heartbeat_dir: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """The variables to add to (or change in) the launcher's environment for its workers;
    ``None`` removes a variable."""
    env = os.environ if environ is None else environ
    out: dict[str, str | None] = {ENV_DIR: heartbeat_dir, "PYTHONUNBUFFERED": "1", ENV_LAUNCHER_PID: str(os.getpid())}
    if "OMP_NUM_THREADS" not in env:
        out["OMP_NUM_THREADS"] = str(max(1, available_cores() // max(1, nproc_per_node)))
    if not cuda and "DS_ACCELERATOR" not in env:
        out["DS_ACCELERATOR"] = "cpu"
    arch = env.get("TORCH_CUDA_ARCH_LIST")
    if arch is not None and sanitize_arch_list(arch) != arch:
        out["TORCH_CUDA_ARCH_LIST"] = sanitize_arch_list(arch) or None
    return out
