"""The rendezvous of a one-node job: torch's ``c10d`` rendezvous on a store the launcher itself
serves on a free port (``localhost:0``), registered as the backend :data:`ONE_NODE` through torch's
``rendezvous_handler_registry``, with one change: the end of the job does not close it.

Closing a rendezvous marks it closed in its store so that no other node joins it later. This one's
store lives in the launcher and goes with it, and no other node knows its port, so the mark is
read by no one; but torch records three events while closing, each naming its caller through two
``inspect.stack()`` calls, which read the source of every frame: measured on a 2-core machine, 0.2 to
2 s between the agent seeing a rank fail and the launcher's report of it. A job of several nodes
(``--nnodes``, ``--rdzv-endpoint``) uses the ``static`` rendezvous and is not affected.
"""

from __future__ import annotations

from typing import Any

ONE_NODE = "deepseek-one-node"
"""The backend name the launcher's ``LaunchConfig.rdzv_backend`` gives for a one-node job."""


def register() -> str:
    """Register :data:`ONE_NODE` with torch (again: a no-op) and return its name."""
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry

    rendezvous_handler_registry.register(ONE_NODE, _create)
    return ONE_NODE


def _create(params: Any) -> Any:
    """torch's ``c10d`` handler of ``params`` (what the ``c10d`` backend creates), not closed at its end."""
    from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import create_backend
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import (
        DynamicRendezvousHandler,
        create_handler,
    )

    class OneNodeRendezvous(DynamicRendezvousHandler):
        def get_backend(self) -> str:
            return ONE_NODE  # the name it was created by (torch's registry checks it)

        def shutdown(self) -> bool:
            self._stop_heartbeats()  # what DynamicRendezvousHandler.shutdown does before it closes
            return True

    backend, store = create_backend(params)
    handler = create_handler(store, backend, params)
    handler.__class__ = OneNodeRendezvous  # the same object and state; only its shutdown differs
    return handler
