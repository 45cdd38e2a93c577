"""A database URL as error lines and reports show it: never with its password. The job service's
``--db`` and ``deepseek tune --storage`` take SQLAlchemy URLs (``postgresql+psycopg://USER:PASSWORD@HOST/DB``)
and name them when they cannot be used; the password stays out of the terminal, logs and CI output,
also where it is given as a query parameter (``?password=...``, ``&sslpassword=...``) or in a libpq
keyword string (``password=x host=y``, as some drivers' ``?dsn=`` or a mistyped URL carry)."""

from __future__ import annotations

import re
from urllib.parse import unquote

_SECRET_NAME = r"(?:pass|pwd|secret|token)"
_VALUE = r"('(?:[^'\\]|\\.)*'?|[^&;\s]*)"
SECRET_KEY = re.compile(r"(?i)((?:^|[?&;\s])[\w.-]*" + _SECRET_NAME + r"[\w.-]*\s*=\s*)" + _VALUE)
"""A ``KEY=VALUE`` whose key names a secret (``password``, ``pass``, ``passwd``, ``pwd``,
``sslpassword``, ``secret``, ``token``, in any case and with any prefix or suffix) in a query
string (ended by ``&`` or ``;``) or a libpq keyword string (ended by white space; a quoted value
ends at its closing quote, or at the end when it has none): group 1 the key, group 2 the value."""

_ENCODED_KEY = re.compile(r"(?i)((?:^|[?&;\s])((?:[\w.-]|%[0-9a-f]{2})*%[0-9a-f]{2}(?:[\w.-]|%[0-9a-f]{2})*)\s*=\s*)"
                          + _VALUE)
"""A ``KEY=VALUE`` whose key holds a percent-escape (``pass%77ord=``): drivers decode query keys, so
its key is matched against the secret names once decoded (group 2 the key as given, group 3 the value)."""


def _masked_encoded(m: re.Match[str]) -> str:
    if not re.search(_SECRET_NAME, unquote(m.group(2)), re.IGNORECASE):
        return m.group(0)
    return m.group(1) + ("***" if m.group(3) else "")


def masked_secrets(text: str) -> str:
    """``text`` with the value of every :data:`SECRET_KEY` in it masked (``***``): a URL, or a
    driver's error line that may quote the connection string it could not use. A percent-encoded key
    (``pass%77ord=``) is decoded before it is matched."""
    text = _ENCODED_KEY.sub(_masked_encoded, text)
    return SECRET_KEY.sub(lambda m: m.group(1) + ("***" if m.group(2) else ""), text)


def shown_url(url: str) -> str:
    """``url`` without its password, also when SQLAlchemy cannot parse it (a bad port, or no URL at
    all: ``postgresql//USER:PASSWORD@HOST/DB`` lacks its ``:``): what stands between ``USER:`` and the
    last ``@`` is masked then (``USER`` begins after ``://``, else after the last ``/`` before it or at
    the start). Any value whose key names a secret (:data:`SECRET_KEY`: ``?password=``,
    ``&sslpassword=``, ``password=x host=y``) is masked as well, parsed or not. A URL without a
    password, or anything else that is no URL (a file path, a word), is otherwise shown as given
    (SQLAlchemy's rendering would percent-encode it)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        shown = url if parsed.password is None else parsed.render_as_string(hide_password=True)  # as given: no secret
    except Exception:  # noqa: BLE001 - an unparsable URL is shown masked, never as given
        user = r"(://[^:/@]*:)" if "://" in url else r"((?:^|/)[^:/@]*:)"
        shown = re.sub(user + r".*@", r"\1***@", url, count=1)
    return masked_secrets(shown)
