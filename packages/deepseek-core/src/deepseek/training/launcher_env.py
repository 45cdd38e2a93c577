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
them from :func:`launcher_env`'s result). The converse, :func:`one_process`: a strategy without
``needs_launcher`` in one of several launched processes is refused the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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


def one_process(strategy_name: str, several: Callable[[], list[str]], *, command: str = "train",
                environ: Mapping[str, str] | None = None) -> None:
    """The other side of the rule: a strategy without ``needs_launcher`` trains alone, so a process
    that is one of several a launcher started (``WORLD_SIZE`` above 1) is refused in one line
    naming ``several()``, the strategies that do run there (called only then: it loads them).
    ``deepseek launch`` checks a config file before it starts anything; this catches what it
    cannot see: ``deepseek.fit`` in a script it runs (``deepseek launch -n 2 -- run train.py``)
    and torchrun started by hand, where each rank would train alone into the same run folder."""
    env = os.environ if environ is None else environ
    size = env.get("WORLD_SIZE", "1")
    if not size.isdigit() or int(size) < 2:
        return
    launched = several()
    script = _script()
    if script is not None and command == "train":  # deepseek.fit in the user's own script
        names = " or ".join(repr(name) for name in launched) or "a strategy with needs_launcher"
        fix = f"give deepseek.fit strategy={names} in {script}"
    else:
        fix = f"use --strategy {' or '.join(launched) or 'a strategy with needs_launcher'}"
    raise UsageError(f"strategy {strategy_name!r} trains in one process, but this process is one of the {size} "
                     f"a launcher started (WORLD_SIZE={size}); {fix}, or launch -n 1")


def _script() -> str | None:
    """The Python script this process runs (``python train.py``), or ``None`` for a module run with
    ``python -m`` (the ``deepseek`` command, pytest), an interactive session or ``python -c``."""
    import sys

    first = sys.argv[0] if sys.argv else ""
    return first if first.endswith(".py") and not first.endswith("__main__.py") else None
