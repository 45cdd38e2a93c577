"""A database URL as error lines and reports show it: never with its password. The job service's
``--db`` and ``deepseek tune --storage`` take SQLAlchemy URLs (``postgresql+psycopg://USER:PASSWORD@HOST/DB``)
and name them when they cannot be used; the password stays out of the terminal, logs and CI output."""

from __future__ import annotations

import re


def shown_url(url: str) -> str:
    """``url`` without its password, also when SQLAlchemy cannot parse it (a bad port, or no URL at
    all: ``postgresql//USER:PASSWORD@HOST/DB`` lacks its ``:``): what stands between ``USER:`` and the
    last ``@`` is masked then (``USER`` begins after ``://``, else after the last ``/`` before it or at
    the start). A URL without a password, or anything else that is no URL (a file path, a word), is
    shown as given (SQLAlchemy's rendering would percent-encode it)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        return url if parsed.password is None else parsed.render_as_string(hide_password=True)  # as given: no secret
    except Exception:  # noqa: BLE001 - an unparsable URL is shown masked, never as given
        user = r"(://[^:/@]*:)" if "://" in url else r"((?:^|/)[^:/@]*:)"
        return re.sub(user + r".*@", r"\1***@", url, count=1)
