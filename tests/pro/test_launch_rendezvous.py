"""The rendezvous of a one-node ``deepseek launch`` job (``deepseek_pro.launch.rendezvous``):
torch's c10d rendezvous on the launcher's own store, which the end of the job stops without
closing. Closing it recorded three events, each walking the stack twice with ``inspect.stack()``
(reading the source of every frame): 0.2 to 2 s measured on the shared 2-core machine between the
agent seeing a rank fail and the launcher's report, for a mark in a store that dies with the
launcher."""

from __future__ import annotations

import inspect
import threading
import uuid

import pytest
from torch.distributed.elastic.rendezvous import RendezvousParameters
from torch.distributed.elastic.rendezvous.registry import get_rendezvous_handler

from deepseek_pro.launch.rendezvous import register


def joined(backend: str) -> object:
    """A handler of ``backend`` for one node on ``localhost:0``, after its rendezvous completed."""
    params = RendezvousParameters(backend=backend, endpoint="localhost:0", run_id=uuid.uuid4().hex[:12],
                                  min_nodes=1, max_nodes=1)
    handler = get_rendezvous_handler(params)
    info = handler.next_rendezvous()
    assert (info.rank, info.world_size) == (0, 1)
    return handler


def keep_alive_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("RendezvousKeepAliveTimer")]


@pytest.mark.parametrize(("backend", "walks"), [("one-node", False), ("c10d", True)])
def test_the_one_node_rendezvous_ends_without_walking_the_stack(backend: str, walks: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher's backend ends its rendezvous (keep-alive thread stopped) with no stack walk;
    torch's c10d backend, which the launcher used before, walks it (six times in torch 2.11: how
    many is torch's business, that it walks at all is what the launcher's backend avoids)."""
    handler = joined(register() if backend == "one-node" else backend)
    assert handler.get_backend() == (register() if backend == "one-node" else "c10d") and not handler.is_closed()
    assert len(keep_alive_threads()) == 1
    calls = []
    stack = inspect.stack
    monkeypatch.setattr(inspect, "stack", lambda *a, **k: calls.append(1) or stack(*a, **k))
    assert handler.shutdown() is True
    assert (len(calls) > 0) is walks, len(calls)
    for thread in threading.enumerate():
        if thread.name.startswith("RendezvousKeepAliveTimer"):
            thread.join(5)
    assert keep_alive_threads() == []


def test_registering_again_is_harmless() -> None:
    assert register() == register() == "deepseek-one-node"
