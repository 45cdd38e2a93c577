"""The ``deepseek tenants`` and ``deepseek jobs`` clients checking what they are given, in process
(``deepseek_here``): answers of another program or of another shape at ``--server`` (a small
``http.server`` plays the server), and input refused before any request is made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_a_server_answering_no_json_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program at --server (a web server's page, a proxy's notice) answering 200: the
    client decoded its body as JSON, an internal error (JSONDecodeError), exit 1."""
    import functools
    import http.server
    import threading

    from _inprocess import deepseek_here

    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "me").write_text("<html>hello</html>")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "v1").mkdir()
    (tmp_path / "other" / "v1" / "me").write_text('{"user": "x"}')  # JSON of something else: was a KeyError
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # its access log would join the command's stderr
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_0123456789ab." + "s" * 24)
    monkeypatch.delenv("DEEPSEEK_TENANT", raising=False)
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            code, err, _ = deepseek_here(monkeypatch, tmp_path, "jobs", "list", "--server", url)
            other_code, other_err, _ = deepseek_here(monkeypatch, tmp_path, "jobs", "list", "--server", f"{url}/other")
        finally:
            httpd.shutdown()
    assert (code, err.splitlines()) == (2, [f"error: --server {url}: answered GET /v1/me with HTTP 200 and a body "
                                            "that is not JSON (application/octet-stream); is it a deepseek server?"])
    assert (other_code, other_err.splitlines()) == (2, [
        f"error: --server {url}/other: answered GET /v1/me without the key tenants; is it a deepseek server of "
        "this version?"])


@pytest.mark.parametrize("body", [b'["no"]', b'"no"'])
def test_a_refusal_whose_json_is_not_an_object_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           body: bytes) -> None:
    """A 4xx answer whose body is JSON but not an object (another program at --server): the client
    read its ``detail`` with ``.get``, an internal error (AttributeError), exit 1."""
    import http.server
    import threading

    from _inprocess import deepseek_here

    class Refuses(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(403)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # its access log would join the command's stderr
            pass

    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_0123456789ab." + "s" * 24)
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuses) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "list", "--tenant", "acme", "--server", url)
        finally:
            httpd.shutdown()
    assert (code, out, err.splitlines()) == (2, "", [f"error: {url}: 403: {body.decode()}"])


def test_an_answer_of_another_shape_is_one_line_naming_the_call_and_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers a client command reads are checked against what it reads (service/answers.py): a
    row without exit_code was 'internal error: KeyError', a list's entry of another type a
    TypeError; and /v1/me's tenants (an object of names and roles) gives the only tenant."""
    import functools
    import http.server
    import json
    import threading

    from _inprocess import deepseek_here

    row = {"id": 7, "state": "succeeded", "command": "train", "user": "bob", "exit_code": 0,
           "created_at": "2026-01-01T00:00:00+00:00", "workspace": "/srv/tenants/acme/jobs/7"}
    answers = {
        "good/v1/me": {"user": "bob", "tenants": {"acme": "member"}},
        "good/v1/tenants/acme/jobs": [row],
        "list/v1/tenants/acme/jobs": [row, {k: v for k, v in row.items() if k != "exit_code"}],
        "tenants/v1/tenants": {"name": "acme"},
        "audit/v1/audit": [{"at": None, "actor": "a", "tenant": "", "action": "x", "target": 3, "result": "ok"}],
        "files/v1/tenants/acme/jobs/7/files": {"truncated": False, "entries": [{"path": "a", "type": "file",
                                                                              "size": "12"}]},
    }
    for name, answer in answers.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(answer))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_0123456789ab." + "s" * 24)
    monkeypatch.delenv("DEEPSEEK_TENANT", raising=False)
    calls = {"good": ("jobs", "list"), "list": ("jobs", "list", "--tenant", "acme"), "tenants": ("tenants", "list"),
             "audit": ("tenants", "audit"), "files": ("jobs", "files", "7", "--tenant", "acme")}
    got = {}
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            for what, argv in calls.items():
                got[what] = deepseek_here(monkeypatch, tmp_path, *argv, "--server", f"{url}/{what}")
        finally:
            httpd.shutdown()
    code, err, out = got["good"]
    assert (code, err) == (0, "") and out.splitlines()[1].split()[:5] == ["7", "succeeded", "train", "bob", "0"]
    tail = "; is it a deepseek server of this version?"
    assert {what: (code, err.splitlines()) for what, (code, err, _) in got.items() if what != "good"} == {
        "list": (2, [f"error: --server {url}/list: answered GET /v1/tenants/acme/jobs without the key "
                     f"[1].exit_code{tail}"]),
        "tenants": (2, [f"error: --server {url}/tenants: answered GET /v1/tenants with an object where a list was "
                        f"expected{tail}"]),
        "audit": (2, [f"error: --server {url}/audit: answered GET /v1/audit with [0].target = 3, not a "
                      f"string{tail}"]),
        "files": (2, [f"error: --server {url}/files: answered GET /v1/tenants/acme/jobs/7/files with "
                      f"entries[0].size = '12', not a whole number from 0 or null{tail}"]),
    }


_ROW = {"id": 7, "state": "succeeded", "command": "train", "user": "bob", "exit_code": 0,
        "created_at": "2026-01-01T00:00:00+00:00", "workspace": "/srv/tenants/acme/jobs/7"}
_TAIL = "; is it a deepseek server of this version?"


@pytest.mark.parametrize(("argv", "path", "answer", "problem"), [
    (("jobs", "list"), "jobs", [{**_ROW, "exit_code": -3}], "[0].exit_code = -3, not an exit code (0-255) or null"),
    (("jobs", "list"), "jobs", [{**_ROW, "exit_code": 10**30}], f"[0].exit_code = {10**30}, not an exit code"),
    (("jobs", "list"), "jobs", [{**_ROW, "id": 0}], "[0].id = 0, not a whole number from 1"),
    (("jobs", "list"), "jobs", [{**_ROW, "state": "exploded"}], "[0].state = 'exploded', not a job state (queued, "),
    (("jobs", "list"), "jobs", [{**_ROW, "created_at": "yesterday"}], "[0].created_at = 'yesterday', not a date"),
    (("jobs", "list"), "jobs", [{**_ROW, "created_at": "9999-12-31T00:00:00"}],
     "[0].created_at = '9999-12-31T00:00:00', not a date and time (ISO 8601, years 2000-2999) or null"),
    (("jobs", "list"), "jobs", [{**_ROW, "user": "../root"}], "[0].user = '../root', not a tenant or user name"),
    (("jobs", "show", "7"), "jobs/7", {"id": 7}, None),  # show prints any object as it is
    (("jobs", "cancel", "7"), "jobs/7/cancel", {**_ROW, "workspace": "/srv/tenants/acme/jobs/8"},
     "with workspace = '/srv/tenants/acme/jobs/8', the workspace of another job than 7"),
    (("jobs", "cancel", "7"), "jobs/7/cancel", {**_ROW, "workspace": "/srv/tenants/acme/jobs/../../../etc/7"},
     "with workspace = '/srv/tenants/acme/jobs/../../../etc/7', not an absolute path ending in jobs/<id>"),
    (("jobs", "files", "7"), "jobs/7/files", {"truncated": False, "entries": [
        {"path": "../../other/secret", "type": "file", "size": 1}]},
     "entries[0].path = '../../other/secret', not a path inside the job's workspace"),
    (("jobs", "files", "7"), "jobs/7/files", {"truncated": False, "entries": [
        {"path": "/etc/passwd", "type": "file", "size": 1}]},
     "entries[0].path = '/etc/passwd', not a path inside the job's workspace"),
    (("jobs", "files", "7"), "jobs/7/files", {"truncated": False, "entries": [
        {"path": "a", "type": "file", "size": -5}]}, "entries[0].size = -5, not a whole number from 0 or null"),
    (("jobs", "files", "7"), "jobs/7/files", {"truncated": False, "entries": [
        {"path": "a", "type": "pipe", "size": None}]}, "entries[0].type = 'pipe', not file, dir, link or other"),
    (("jobs", "logs", "7"), "jobs/7/logs", {"text": "x", "next_offset": -1, "state": "running"},
     "next_offset = -1, not a whole number from 0"),
    (("jobs", "logs", "7"), "jobs/7/logs", {"text": "again\n", "next_offset": 0, "state": "running"},
     "next_offset = 0, not past the offset 0 it was asked for"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 16 else None)
def test_an_answer_with_values_the_server_cannot_send_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], path: str, answer: object,
        problem: str | None) -> None:
    """The client checked the types of the server's answers, not their values: a negative exit code
    or size, an unknown state, 'yesterday' as a time, a listed path outside the workspace were
    printed as if true, and a log part whose next_offset does not advance printed the same output
    for ever under --follow. Now each is one line naming the call and the key, exit 2."""
    import functools
    import http.server
    import json
    import threading

    from _inprocess import deepseek_here

    target = tmp_path / "srv" / "v1" / "tenants" / "acme" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(answer))

    class Answers(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's name) -- a cancel answers the same file
            self.do_GET()

    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_0123456789ab." + "s" * 24)
    monkeypatch.setenv("DEEPSEEK_TENANT", "acme")
    handler = functools.partial(Answers, directory=str(tmp_path / "srv"))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            code, err, out = deepseek_here(monkeypatch, tmp_path, *argv, "--server", url)
        finally:
            httpd.shutdown()
    if problem is None:
        assert (code, err) == (0, "") and json.loads(out) == answer
        return
    (line,) = err.splitlines()
    method = "POST" if argv[1] == "cancel" else "GET"
    assert code == 2 and line.startswith(f"error: --server {url}: answered {method} /v1/tenants/acme/{path}")
    assert problem in line and line.endswith(_TAIL) and out.count("again") <= 1


@pytest.mark.parametrize("args", [["tenants", "quota", "acme", "--cpus", "nan"],
                                  ["tenants", "quota", "acme", "--gpu-memory-fraction", "inf"],
                                  ["tenants", "quota", "acme", "--device-hours", "-inf"],
                                  ["tenants", "token", "acme", "bob", "--expires-days", "nan"]])
def test_the_client_refuses_non_finite_numbers_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         args: list[str]) -> None:
    """They were an internal error (exit 1) encoding the request; refused before any request now."""
    from _inprocess import deepseek_here

    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing is asked of a server
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, *args)
    assert code == 2 and len(err.splitlines()) == 1 and "is not a finite number" in err, err
    assert out == ""


@pytest.mark.parametrize(("option", "value", "why"), [
    ("--devices", "-1", "-1 is not in the range 0<=x<=4096."),
    ("--period-days", "0", "0 is not in the range 1<=x<=3660."),
    ("--running-jobs", "0", "0 is not in the range 1<=x<=100000."),
    ("--gpu-memory-fraction", "2", "'2' is out of range; give a finite number > 0 and <= 1"),
    ("--gpu-memory-fraction", "0", "'0' is out of range; give a finite number > 0 and <= 1"),
])
def test_a_quota_out_of_the_servers_range_is_refused_before_any_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str, why: str) -> None:
    """``tenants quota``/``create`` sent them and only the server's 422 refused them; the range is
    now one rule for both (service/quota_ranges.py)."""
    from _inprocess import deepseek_here

    from deepseek_enterprise.service.api_admin import QuotaIn
    from deepseek_enterprise.service.quota_ranges import QUOTA_RANGES

    assert set(QuotaIn.model_fields) == set(QUOTA_RANGES)  # every field the server takes has its range here
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing listens: a request would fail otherwise
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    for command in ("quota", "create"):
        code, err, out = deepseek_here(monkeypatch, tmp_path, "tenants", command, "acme", option, value)
        assert (code, out, err) == (2, "", f"error: Invalid value for '{option}': {why} (see 'deepseek tenants "
                                           f"{command} --help')")


def test_the_client_refuses_a_token_lifetime_under_an_hour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--expires-days 1e-9`` was sent and made a token that had expired before its first use; the
    client now holds it to the server's range (service.tokens.MIN_DAYS) before any request."""
    from _inprocess import deepseek_here

    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing is asked of a server
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tenants", "token", "acme", "bob", "--expires-days", "1e-9")
    assert (code, out, err.splitlines()) == (2, "", [
        "error: Invalid value for '--expires-days': '1e-9' is out of range; give a finite number >= 0.0416667 and "
        "<= 3660 (see 'deepseek tenants token --help')"])


def test_the_token_lifetime_help_states_the_servers_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--expires-days``' help said 0.0417 and 3660 as literals beside the range the option checks
    (service.tokens.MIN_DAYS / MAX_DAYS): built from the constants, it states what they hold (the
    module read again with other values says those)."""
    import importlib

    from deepseek_enterprise.service import cli, tokens

    def help_of() -> str:
        (option,) = [p for p in cli.token.params if p.name == "expires_days"]
        return option.help

    assert help_of() == f"Days until the token expires, from {tokens.MIN_DAYS:.3g} (1 h) to {tokens.MAX_DAYS:g}."
    assert "0.0417" in help_of() and "3660" in help_of()
    try:
        monkeypatch.setattr(tokens, "MIN_DAYS", 0.5)
        monkeypatch.setattr(tokens, "MAX_DAYS", 400)
        importlib.reload(cli)
        assert help_of() == "Days until the token expires, from 0.5 (12 h) to 400."
    finally:
        monkeypatch.undo()
        importlib.reload(cli)
    assert "3660" in help_of()


def test_submit_refuses_two_files_of_one_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both landed under one name in the workspace: one was silently lost."""
    from _inprocess import deepseek_here

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "words.txt").write_text(folder)
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # refused before any request
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "submit", "--file", "a/words.txt", "--file",
                                   "b/words.txt", "train")
    assert (code, out, err) == (2, "", "error: --file: words.txt given twice (files land in the workspace under "
                                       "their names); give each name once")


@pytest.mark.parametrize("kind", ["fifo", "device", "big"])
def test_submit_refuses_a_file_it_cannot_send_before_reading_it_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      kind: str) -> None:
    """--file or --config was read whole: a FIFO blocked the command for ever, a device (/dev/zero)
    filled its memory until it was killed; a file past the server's limit was read and sent to be
    refused. Now one line before reading more than the limit, and before any request."""
    import contextlib
    import threading

    from _inprocess import deepseek_here

    from deepseek_enterprise.service.jobpaths import MAX_FILE_BYTES

    path = {"fifo": tmp_path / "pipe", "device": Path("/dev/null"), "big": tmp_path / "big.txt"}[kind]
    done = threading.Event()
    if kind == "fifo":
        os.mkfifo(path)

        def unblock() -> None:  # a build that waits in the FIFO's open gets an end of file: it fails, not hangs
            while not done.wait(0.5):
                with contextlib.suppress(OSError):  # ENXIO: nothing has it open for reading
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

        threading.Thread(target=unblock, daemon=True).start()
    elif kind == "big":
        path.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # refused before any request
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    option = "--config" if kind == "device" else "--file"
    try:
        code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "submit", option, str(path), "train")
    finally:
        done.set()
    why = (f"larger than {MAX_FILE_BYTES} bytes, the most the server takes for a job's file; put the data in the "
           "tenant's folder and name it by its path") if kind == "big" else "not a regular file; give a text file"
    assert (code, out, err) == (2, "", f"error: {option} {path}: {why}")


@pytest.mark.parametrize(("kind", "why"), [
    ("latin-1", "not UTF-8 text (byte 0xe9 at offset 12); save it as UTF-8 text"),
    ("missing", "does not exist; check the path"),
    ("folder", "is a folder; give a text file"),
    ("below a file", "cannot read it (Not a directory); check the path and its permissions"),
], ids=["latin-1", "missing", "folder", "below a file"])
def test_a_local_file_a_job_cannot_send_is_one_line_that_says_how_to_fix_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, why: str) -> None:
    """A --config or --file that is no UTF-8 text, missing, a folder, or below a file was refused as
    '--file PATH: cannot read it (UnicodeDecodeError)' (the exception's class name: no byte, no
    place, no fix)."""
    from _inprocess import deepseek_here

    (tmp_path / "afile").write_text("")
    (tmp_path / "latin.toml").write_bytes(b"ok = 1\n# caf\xe9\n")
    (tmp_path / "folder").mkdir()
    path = {"latin-1": "latin.toml", "missing": "nope.toml", "folder": "folder", "below a file": "afile/x.toml"}[kind]
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # refused before any request
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    for option in ("--config", "--file"):
        code, err, out = deepseek_here(monkeypatch, tmp_path, "jobs", "submit", option, path, "train")
        assert (code, out, err) == (2, "", f"error: {option} {path}: {why}")


@pytest.mark.parametrize(("label", "why"), [
    ("ci\x1b[31mbot", "'ci\\x1b[31mbot' holds the control character U+001B; give a label of one line of printable "
                      "characters"),
    ("x" * 64, "64 characters, more than 63; give a shorter label"),
], ids=["control character", "too long"])
def test_a_token_label_the_server_would_refuse_is_refused_before_any_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, why: str) -> None:
    """``tenants token --name`` with a control character or over 63 characters went to the server,
    whose 422 quoted its pydantic pattern: "name: String should match pattern '^[^\\x00-\\x1f\\x7f]*$'"."""
    from _inprocess import deepseek_here

    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing listens: a request would fail otherwise
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tenants", "token", "acme", "bob", "--name", label)
    assert (code, out, err) == (2, "", f"error: Invalid value for '--name': {why} (see 'deepseek tenants token "
                                       "--help')")


@pytest.mark.parametrize(("value", "why"), [
    ("zzz", "'zzz' is not a token id; give the 12 hex digits after dsk_ in the token"),
    ("dsk_0123456789ab.SECRETsecretSECRETsecret", "a whole token, its secret too (keep it off command lines); give "
                                                  "its id only: 0123456789ab, the 12 hex digits after dsk_"),
], ids=["not an id", "whole token"])
def test_tenants_revoke_takes_a_token_id_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str,
                                              why: str) -> None:
    """``tenants revoke`` sent any text as the id: a pasted whole token put its secret in the
    request's URL and the server's audit log."""
    from _inprocess import deepseek_here

    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # nothing listens: a request would fail otherwise
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tenants", "revoke", value)
    assert (code, out, err) == (2, "", f"error: Invalid value for 'TOKEN_ID': {why} (see 'deepseek tenants revoke "
                                       "--help')")
