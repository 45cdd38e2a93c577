"""The one rule of ``needs_launcher``: a strategy that declares it runs only in a process a
launcher started.

A launcher (``deepseek launch`` from deepseek-pro, or torchrun itself) starts one process per
device and gives each the torchrun environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. Core reads nothing else from the launcher. Before a strategy
whose class sets ``needs_launcher = True`` sets up (:class:`deepseek.training.engine.StepEngine`
for ``train`` and ``bench train``), core calls :func:`launcher_env`, which refuses a process
without these variables in one line (exit code 2) naming the strategy and the command that starts
it. The strategy then joins its process group from the same values in its
``setup_environment`` (``init_process_group("gloo")`` reads them through ``env://``, or it passes
them from :func:`launcher_env`'s result).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from deepseek.errors import UsageError

LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""The variables torchrun (and so ``deepseek launch``) sets in every process it starts."""


PEER_GONE = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
    "Socket Timeout",
)
"""Error text of a rank whose peer died under it (gloo, NCCL): a consequence of another rank's
failure, which the launcher names, not a fault of this one."""


def peer_lost(exc: BaseException, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``exc``, raised in a process of a launched job of several ranks, says another
    rank's connection went away (:data:`PEER_GONE`)."""
    env = os.environ if environ is None else environ
    if not env.get("WORLD_SIZE", "1").isdigit() or int(env.get("WORLD_SIZE", "1")) < 2:
        return False
    return any(phrase in str(exc) for phrase in PEER_GONE)


@dataclass(frozen=True)
class LauncherEnv:
    """This process's place in the job, as the launcher gave it."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def launcher_env(strategy_name: str, *, command: str = "train", environ: Mapping[str, str] | None = None) -> LauncherEnv:
    """The launcher's variables of this process; a :class:`UsageError` naming ``strategy_name``
    and how to start ``deepseek COMMAND`` under a launcher when any is missing or malformed."""
    env = os.environ if environ is None else environ
    script = _script()
    if script is not None and command == "train":  # deepseek.fit in the user's own script
        start = (f"`deepseek launch -n N -- run {script}` (or `torchrun --nproc-per-node N {script}`), "
                 f"with strategy={strategy_name!r} in the script")
    else:
        start = (f"`deepseek launch -n N -- {command} --strategy {strategy_name} ...` "
                 f"(or `torchrun --nproc-per-node N -m deepseek {command} --strategy {strategy_name} ...`)")
    missing = [k for k in LAUNCHER_ENV if not env.get(k)]
    if missing:
        raise UsageError(
            f"strategy {strategy_name!r} needs one process per device started by a launcher "
            f"(missing environment: {', '.join(missing)}); run it with {start}"
        )
    try:
        return LauncherEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]),
                           env["MASTER_ADDR"], int(env["MASTER_PORT"]))
    except ValueError as exc:
        raise UsageError(f"strategy {strategy_name!r}: the launcher environment is malformed ({exc}); "
                         f"run it with {start}") from exc


def _script() -> str | None:
    """The Python script this process runs (``python train.py``), or ``None`` for a module run with
    ``python -m`` (the ``deepseek`` command, pytest), an interactive session or ``python -c``."""
    import sys

    first = sys.argv[0] if sys.argv else ""
    return first if first.endswith(".py") and not first.endswith("__main__.py") else None
