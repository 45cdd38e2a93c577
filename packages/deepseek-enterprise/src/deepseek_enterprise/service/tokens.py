"""API tokens: random, shown once, stored as a slow-KDF hash, compared in constant time.

A token reads ``dsk_<id>.<secret>``: ``id`` (12 hex digits) is public and finds the row;
``secret`` (``secrets.token_urlsafe(32)``, 256 bits) is never stored. The row keeps
``scrypt$n$r$p$<salt hex>$<hash hex>`` with a fresh 16-byte salt per token, so a stolen database
gives neither tokens nor a cheap way to guess them. Verification recomputes the hash and compares
with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "dsk_"
_TOKEN = re.compile(r"^dsk_([0-9a-f]{12})\.([A-Za-z0-9_-]{20,128})\Z")  # not $: it let a trailing "\n" past

MIN_DAYS, MAX_DAYS = 1 / 24, 3660
"""The lifetimes a token may be given, in days: from one hour (a shorter one expires before it
can be used: ``1e-9`` days is 86 microseconds) to ten years; longer-lived, none (it never expires)."""

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost: about 16 MiB and tens of milliseconds per hash."""


def new_token() -> tuple[str, str, str]:
    """A fresh token: ``(token shown once, public id, stored hash)``."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}{token_id}.{secret}", token_id, hash_secret(secret)


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else None."""
    m = _TOKEN.match(token)
    return (m.group(1), m.group(2)) if m else None


def token_id_problem(value: str) -> str | None:
    """Why ``value`` is no token id, the 12 hex digits after ``dsk_`` (``None``: it is one). A whole
    token is named as such, without its secret: sent as an id, the secret would reach the request's
    URL, the server's answer and its audit log."""
    if re.fullmatch(r"[0-9a-f]{12}", value):
        return None
    whole = split_token(value)
    if whole is not None:
        return (f"a whole token, its secret too (keep it off command lines); give its id only: {whole[0]}, "
                "the 12 hex digits after dsk_")
    return f"{value!r} is not a token id; give the 12 hex digits after dsk_ in the token"


def hash_secret(secret: str, salt: bytes | None = None, n: int = SCRYPT_N, r: int = SCRYPT_R,
                p: int = SCRYPT_P) -> str:
    """The stored form of ``secret``: scrypt with a per-token salt, parameters recorded."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 * 2**20)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant-time comparison of the digests)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        again = hash_secret(secret, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(again.rsplit("$", 1)[1], digest)
