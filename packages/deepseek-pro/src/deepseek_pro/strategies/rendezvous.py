"""How a distributed strategy's process joins the others (``DistributedStrategy.setup_environment``):
the launcher's store under a prefix of its own for each process group, and the waits and errors
of the meeting as the user sees them (a signal ends the wait, a store error is one line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from deepseek.errors import UsageError

_GROUPS_MADE = [0]
"""Process groups this process has made so far (every rank makes them in the same order)."""


def fresh_store(rank: int, world_size: int, timeout: timedelta) -> Any:
    """The launcher's store (``env://``: torchrun's agent store, or ``MASTER_ADDR:MASTER_PORT``)
    under a prefix of its own for each group this process makes. A second run in one process
    (two ``deepseek.fit`` calls) made its group under the keys the first group had left in
    torchrun's store, and its ranks could wait on each other's old addresses for ever."""
    import torch.distributed as dist

    store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
    _GROUPS_MADE[0] += 1
    return dist.PrefixStore(f"deepseek/group-{_GROUPS_MADE[0]}", store)


@contextlib.contextmanager
def signals_end_the_wait() -> Iterator[None]:
    """SIGTERM and SIGINT end the process while it waits for the other ranks to join: the wait is
    in C++, where Python's handlers (the trainer's stop request) run only once it returns, after
    ``strategy.timeout_s``. Nothing is written before the group exists."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in saved:
        signal.signal(sig, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def rendezvous_errors(world_size: int) -> Iterator[None]:
    """The store's errors while the ranks meet, as one line: a rank that never came (started by
    hand without the others), or an address that cannot be used."""
    import os

    import torch.distributed as dist

    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        yield
    except dist.DistStoreError as exc:
        raise UsageError(f"strategy: the {world_size} ranks did not all meet at {where} ({str(exc).splitlines()[0]}); "
                         "start every rank (deepseek launch -n N starts them together), or raise "
                         "strategy.timeout_s") from None
    except dist.DistNetworkError as exc:
        raise UsageError(f"strategy: cannot meet the other ranks at {where} ({str(exc).splitlines()[0]}); give a "
                         "free MASTER_PORT and a reachable MASTER_ADDR, or use deepseek launch") from None
