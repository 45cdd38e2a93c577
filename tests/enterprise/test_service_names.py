"""A tenant or user name the server would refuse is refused by the client before any request,
in one line naming where it came from (a name with '/' or '..' changed the request's URL: the
server answered a generic 404)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here

BAD = "'a/../x' is not a tenant or user name: 1-63 lower-case letters, digits and '-', starting with a letter or digit"


@pytest.mark.parametrize(("args", "where"), [
    (["jobs", "list", "--tenant", "a/../x"], "--tenant"),
    (["jobs", "download", "1", "--tenant", "a/../x", "--out", "o"], "--tenant"),
    (["tenants", "quota", "a/../x"], "NAME"),
    (["tenants", "add-user", "acme", "a/../x"], "USER"),
    (["tenants", "token", "a/../x", "alice"], "TENANT"),
    (["tenants", "audit", "--tenant", "a/../x"], "--tenant"),  # was sent: the server's generic 404
])
def test_a_name_the_server_would_refuse_is_refused_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      args: list[str], where: str) -> None:
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing listens: any request would fail
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, *args)
    assert (code, out) == (2, ""), err
    assert err.strip() == f"error: Invalid value for '{where}': {BAD} (see 'deepseek {' '.join(args[:2])} --help')"
    assert list(tmp_path.iterdir()) == []


def test_a_bad_deepseek_tenant_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    monkeypatch.setenv("DEEPSEEK_TENANT", "a/../x")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "list")
    assert (code, out) == (2, ""), err
    assert err.strip() == f"error: DEEPSEEK_TENANT: {BAD}; set it to a tenant's name or name one with --tenant"


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "http://:8600", "http://127.0.0.1:0"])
def test_a_server_url_without_a_usable_host_or_port_is_refused_before_any_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DEEPSEEK_SERVER", url)  # an unclosed '[' was an internal error (InvalidURL), exit 1
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "list", "--tenant", "acme")
    assert (code, out) == (2, ""), err
    assert err.strip() == f"error: --server {url!r}: use http://HOST:PORT or https://HOST:PORT"


def test_an_empty_server_option_is_refused_not_read_as_not_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--server ''`` (a script's unset variable) went to DEEPSEEK_SERVER or the default server,
    another server than the one meant: a job submitted there, a cancel sent there."""
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing listens: any request would fail
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "list", "--tenant", "acme", "--server", "")
    assert (code, out, err) == (2, "", "error: --server '': use http://HOST:PORT or https://HOST:PORT")
