"""A job service listening on a real port (uvicorn in a thread of the test process), for clients
that need a real HTTP server: a browser, ``deepseek jobs download``. ``seen`` records every
request line and ``Referer`` the server received."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from _servicehelpers import Deploy


@dataclass
class Live:
    url: str
    seen: list[str] = field(default_factory=list)


@contextlib.contextmanager
def live(d: Deploy) -> Iterator[Live]:
    """``d``'s application served on 127.0.0.1 at a free port until the block ends."""
    app: Any = d.client.app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = Live(f"http://127.0.0.1:{port}")

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            query = scope.get("query_string", b"").decode("latin-1")
            out.seen.append(f"{scope['method']} {scope.get('raw_path', b'').decode('latin-1')}?{query} "
                            f"referer={headers.get(b'referer', b'').decode('latin-1')}")
        await app(scope, receive, send)

    server = uvicorn.Server(uvicorn.Config(recording, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{out.url}/openapi.json", timeout=1)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and thread.is_alive(), "the live server did not start"
            time.sleep(0.05)
    try:
        yield out
    finally:
        server.should_exit = True
        thread.join(timeout=10)
