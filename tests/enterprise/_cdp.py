"""A headless Chromium driven over the Chrome DevTools Protocol (CDP), for tests of the web page.

The protocol runs over a pipe (``--remote-debugging-pipe``: Chromium reads commands on fd 3 and
writes answers and events on fd 4, each a JSON message ended by a NUL byte), so no port and no
websocket library are needed. :func:`chromium` is the binary (``DEEPSEEK_TEST_CHROMIUM``, set by
``.ci/services/chromium.sh``, else ``chromium`` on ``PATH``) or ``None``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any


def chromium() -> str | None:
    path = os.environ.get("DEEPSEEK_TEST_CHROMIUM") or shutil.which("chromium")
    return path if path and os.access(path, os.X_OK) else None


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless Chromium; :meth:`open` a page, :meth:`evaluate` JavaScript in it."""

    def __init__(self, binary: str) -> None:
        self._profile = tempfile.mkdtemp(prefix="ds-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends become fds 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.session: str | None = None

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next:
                    if "error" in answer:
                        raise CdpError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise CdpError(f"{method}: no answer from Chromium in {timeout}s")
            data = os.read(self._from_chrome, 1 << 16)
            if not data:
                raise CdpError(f"{method}: Chromium exited (code {self.proc.poll()})")
            self._buf += data

    def open(self, url: str) -> None:
        """A new tab at ``url``; later calls act in it."""
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in r:
            details = r["exceptionDetails"]
            raise CdpError(f"{expression!r}: {details.get('exception', {}).get('description') or details.get('text')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate ``expression`` until it is truthy (an exception counts as false: the page may
        still be loading); its value (AssertionError at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except CdpError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout}s: {expression}; page text: "
                                     f"{self.evaluate('document.body.innerText')!r}")
            time.sleep(0.1)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        shutil.rmtree(self._profile, ignore_errors=True)
