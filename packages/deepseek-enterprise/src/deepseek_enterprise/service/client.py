"""The HTTP client of ``deepseek jobs`` and ``deepseek tenants`` (httpx).

The server is ``--server URL`` or ``DEEPSEEK_SERVER`` (default ``http://127.0.0.1:8600``); the
token is ``DEEPSEEK_TOKEN`` (never an argument: command lines are visible to other users). Every
failure is a :class:`~deepseek.errors.UsageError` of one line (the CLI exits 2): the server's own
``detail`` for a refused request, the URL and the reason when it cannot be reached, the key that
an answer lacks or has of another type (each call names the :class:`~.answers.Shape` it reads).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from deepseek.errors import UsageError
from deepseek_enterprise.service.answers import ME, Shape, check

DEFAULT_SERVER = "http://127.0.0.1:8600"


def _url_works(url: str) -> bool:
    """Whether ``url`` has a host and a port in range (an unclosed ``[`` or ``:99999`` was an
    internal error of the HTTP library)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        return False


class Client:
    """Requests to one server with one token."""

    def __init__(self, server: str | None, token: str | None = None, timeout: float = 30.0) -> None:
        # --server '' is refused below, not read as "not given" (another server, the default's)
        self.server = (server if server is not None else os.environ.get("DEEPSEEK_SERVER") or DEFAULT_SERVER).rstrip("/")
        if not self.server.startswith(("http://", "https://")) or not _url_works(self.server):
            raise UsageError(f"--server {self.server!r}: use http://HOST:PORT or https://HOST:PORT")
        self.token = token if token is not None else os.environ.get("DEEPSEEK_TOKEN", "")
        self.timeout = timeout

    def request(self, method: str, path: str, shape: Shape, json: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        """The answer to ``method path``, checked against ``shape`` (what the caller reads of it)."""
        import httpx

        try:
            r = httpx.request(method, f"{self.server}{path}", json=json, params=params, timeout=self.timeout,
                              headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            raise self._refused(r)
        try:
            answer = r.json()
        except ValueError:  # another program at that address: a web page, a proxy's notice
            raise UsageError(f"--server {self.server}: answered {method} {path} with HTTP {r.status_code} and a body "
                             f"that is not JSON ({r.headers.get('content-type') or 'no content type'}); is it a "
                             "deepseek server?") from None
        return check(answer, shape, f"--server {self.server}: answered {method} {path}")

    @contextlib.contextmanager
    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """A GET whose body is read as it comes (``response.iter_bytes()``): downloads."""
        import httpx

        try:
            with httpx.stream("GET", f"{self.server}{path}", params=params, timeout=self.timeout,
                              headers=self._headers()) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self._refused(r)
                yield r
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _headers(self) -> dict[str, str]:
        if not self.token:
            raise UsageError("no token: set DEEPSEEK_TOKEN to your API token (deepseek tenants token prints one)")
        from deepseek_enterprise.service.tokens import split_token

        if split_token(self.token) is None:  # a stray character would break the request itself
            raise UsageError("DEEPSEEK_TOKEN: not an API token (dsk_<12 hex digits>.<secret>); set it to a token "
                             "as deepseek tenants token printed it")
        return {"Authorization": f"Bearer {self.token}"}

    def _unreachable(self, exc: Exception) -> UsageError:
        return UsageError(f"--server {self.server}: cannot reach the server, or it stopped answering "
                          f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}); "
                          "is deepseek server running?")

    def _refused(self, r: Any) -> UsageError:
        """The refusal's line: a deepseek server's ``detail``, else the body as it came (another
        program's page or JSON of another shape, ``[...]`` or ``"..."`` too)."""
        try:
            answer = r.json()
        except ValueError:
            answer = None
        detail = answer.get("detail", r.text) if isinstance(answer, dict) else r.text
        return UsageError(f"{self.server}: {r.status_code}: {' '.join(str(detail).split())[:500]}")

    def get(self, path: str, shape: Shape, **params: Any) -> Any:
        return self.request("GET", path, shape, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, shape: Shape, json: Any = None) -> Any:
        return self.request("POST", path, shape, json=json if json is not None else {})

    def tenant(self, name: str | None) -> str:
        """``name``, else ``DEEPSEEK_TENANT``, else the caller's only tenant."""
        if name:
            return name
        name = os.environ.get("DEEPSEEK_TENANT")
        if name:
            from deepseek_enterprise.service.names import name_problem

            problem = name_problem(name)
            if problem:
                raise UsageError(f"DEEPSEEK_TENANT: {problem}; set it to a tenant's name or name one with --tenant")
            return name
        tenants = sorted(self.get("/v1/me", ME)["tenants"])  # tenant name -> your role
        if len(tenants) != 1:
            raise UsageError(f"--tenant: you are in {len(tenants)} tenants ({', '.join(tenants) or 'none'}); "
                             "name one with --tenant or DEEPSEEK_TENANT")
        return tenants[0]
