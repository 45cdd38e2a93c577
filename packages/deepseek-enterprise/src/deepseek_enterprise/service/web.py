"""The read-only web page of a tenant: ``GET /ui`` (docs/service.md, "Web page").

One HTML file (``web_page.html`` next to this module) with its CSS and JavaScript inline and
nothing fetched from elsewhere. The page holds no data: its script reads the API token from the
URL fragment (``/ui#token=dsk_...&tenant=acme&job=3``; browsers never send a fragment to a server,
so the token reaches no request line, log or ``Referer``), keeps it in the tab's
``sessionStorage``, removes it from the address bar, and calls the JSON API with it in the
``Authorization`` header: the jobs list and ``.../metrics`` of the selected job, polled every
second. Every right is therefore the API's (a viewer token is enough; another tenant's job is 404).

The answer carries a Content-Security-Policy that allows exactly its own inline script and style
(by their SHA-256), requests to this server only, and no framing; the page writes data with
``textContent`` only, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()
PAGE = "web_page.html"


def page() -> tuple[str, dict[str, str]]:
    """The page's HTML and the headers it is served with."""
    html = resources.files(__package__).joinpath(PAGE).read_text(encoding="utf-8")

    def digests(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)

    csp = (f"default-src 'none'; script-src {digests('script')}; style-src {digests('style')}; "
           "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, {"Content-Security-Policy": csp, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                  "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
def ui() -> HTMLResponse:
    """The page (no authentication here: it holds no data; its script calls the API)."""
    html, headers = page()
    return HTMLResponse(html, headers=headers)
