"""The ``torch.optim`` class names DeepSpeed trains with, for the submit check of a job's
DeepSpeed file (:func:`deepseek_pro.strategies.deepspeed_user.torch_optimizers`), listed without
importing torch into the server.

Listing them imports torch (2-3 s, hundreds of MiB), which the server's process never does: the
same function runs once, in a child process of the server's Python (the interpreter and installed
packages its jobs run with), the first time a submit needs it (a file whose ``optimizer.type`` is
not one of DeepSpeed's own), and its answer is kept for the server's life. A child that fails
(torch not importable, a timeout) answers ``None``: the type is then checked when the job runs,
as before; the next submit that needs the list tries again.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

log = logging.getLogger(__name__)

CHILD_TIMEOUT_S = 120.0
"""How long the child may take to import torch and list its optimizers."""

_LIST = ("import json; from deepseek_pro.strategies.deepspeed_user import torch_optimizers; "
         "print(json.dumps(torch_optimizers()))")

_lock = threading.Lock()
_names: list[str] | None = None


def torch_optimizers() -> list[str] | None:
    """:func:`deepseek_pro.strategies.deepspeed_user.torch_optimizers` as a child process of the
    server's Python gives it (kept once listed), or ``None`` where the child fails."""
    global _names  # noqa: PLW0603 - one listing per server process
    with _lock:  # concurrent submits wait for one child rather than start one each
        if _names is None:
            _names = _listed()
        return _names


def _listed() -> list[str] | None:
    try:
        done = subprocess.run([sys.executable, "-c", _LIST], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot list torch.optim's classes for the submit check (%s); the job checks its "
                    "DeepSpeed optimizer type", exc)
        return None
    try:
        names = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        log.warning("cannot list torch.optim's classes for the submit check (exit code %s: %s); the job "
                    "checks its DeepSpeed optimizer type", done.returncode, done.stderr.strip()[-300:])
        return None
    return names
