"""``deepseek server`` for real (uvicorn on a free port, in its own process) driven by ``deepseek
tenants`` and ``deepseek jobs``; the server killed with SIGKILL while a job runs and restarted:
the job is re-attached and can still be cancelled, its exit code read back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servicehelpers import CLI_HOST as HOST
from _servicehelpers import TINY_TRAIN, ServerProcess, free_port, run_cli


class Dead:
    """Where no server listens (``ds`` needs only a URL)."""

    def __init__(self, url: str) -> None:
        self.url = url


def start_server(root: Path, *, new: bool = True) -> ServerProcess:
    return ServerProcess(root, "--slots", "2", "--grace", "60", new=new)


def ds(*argv: str, token: str | None = None, server: ServerProcess | Dead) -> tuple[int, str, str]:
    return run_cli(*argv, token=token, url=server.url)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path / "srv")
    yield srv
    srv.kill()


def _one_line_error(result: tuple[int, str, str], words: str) -> None:
    code, _out, err = result
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ") and words in err, result


def _wait(server: ServerProcess, token: str, job: int, states: set[str], timeout: float = 120) -> str:
    end = time.monotonic() + timeout
    while True:
        code, out, err = ds("jobs", "list", "--tenant", "acme", token=token, server=server)
        assert code == 0, err
        state = next(line.split()[1] for line in out.splitlines()[1:] if line.split()[0] == str(job))
        if state in states or time.monotonic() > end:
            return state
        time.sleep(0.3)


def test_server_and_clients_end_to_end_with_a_sigkill_restart(server: ServerProcess, tmp_path: Path) -> None:
    admin = server.token
    assert admin and admin.startswith("dsk_")
    assert os.stat(server.root).st_mode & 0o077 == 0
    _one_line_error(ds("tenants", "create", "acme", "--running-jobs", "0", token=admin, server=server),
                    "running_jobs")  # every job would have waited for ever
    assert ds("tenants", "create", "acme", "--running-jobs", "2", token=admin, server=server)[0] == 0
    _one_line_error(ds("tenants", "quota", "acme", "--running-jobs", "0", token=admin, server=server), "running_jobs")
    assert ds("tenants", "create", "globex", token=admin, server=server)[0] == 0
    assert ds("tenants", "add-user", "acme", "bob", token=admin, server=server)[1] == "bob is member in acme\n"
    assert ds("tenants", "add-user", "globex", "gil", token=admin, server=server)[0] == 0
    code, bob, err = ds("tenants", "token", "acme", "bob", token=admin, server=server)
    bob = bob.strip()
    assert code == 0 and bob.startswith("dsk_") and "shown once" in err
    gil = ds("tenants", "token", "globex", "gil", token=admin, server=server)[1].strip()

    config = tmp_path / "tiny.toml"
    config.write_text("[model]\nname = \"tiny\"\nd_model = 32\nn_heads = 2\nn_layers = 1\nmax_seq_len = 32\n")
    code, out, err = ds("jobs", "submit", "--config", str(config), "train", *TINY_TRAIN, "--run-dir", "runs/a",
                        token=bob, server=server)
    assert code == 0 and out.startswith("job 1 queued in tenant acme"), err
    code, out, _ = ds("jobs", "logs", "1", "--follow", token=bob, server=server)
    assert code == 0 and out.rstrip().endswith("job 1 succeeded (exit code 0)") and "run folder: runs/a" in out
    assert (server.root / "tenants" / "acme" / "jobs" / "1" / "runs" / "a" / "config.toml").is_file()

    # refusals: one line, exit 2
    _one_line_error(ds("jobs", "submit", "train", "--run-dir", "/etc", token=bob, server=server), "outside the tenant")
    _one_line_error(ds("jobs", "show", "1", token=gil, server=server), "404: no job 1 in tenant 'globex'")
    _one_line_error(ds("jobs", "show", "1", "--tenant", "acme", token=gil, server=server), "404: no tenant 'acme'")
    _one_line_error(ds("jobs", "list", token=bob[:-1] + "x", server=server), "401: invalid token")
    _one_line_error(ds("tenants", "create", "x", token=bob, server=server), "403: this needs a platform admin")
    _one_line_error(ds("jobs", "list", token=None, server=server), "no token: set DEEPSEEK_TOKEN")
    dead = Dead(f"http://127.0.0.1:{free_port()}")
    _one_line_error(ds("jobs", "list", token=bob, server=dead), "cannot reach the server")

    # a long job, then the server is killed with SIGKILL and restarted on the same root
    code, out, err = ds("jobs", "submit", "train", *TINY_TRAIN, "--max-steps", "100000", "--run-dir", "runs/long",
                        "--set", "checkpoint.interval=0", "--set", "train.eval_interval=0", token=bob, server=server)
    assert code == 0, err
    assert _wait(server, bob, 2, {"running"}) == "running"
    metrics = server.root / "tenants" / "acme" / "jobs" / "2" / "runs" / "long" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not metrics.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    server.kill()
    again = start_server(server.root, new=False)
    try:
        assert _wait(again, bob, 2, {"running", "lost"}, timeout=5) == "running"  # re-attached
        assert ds("jobs", "cancel", "2", token=bob, server=again)[1] == "job 2 stopping\n"
        assert _wait(again, bob, 2, {"cancelled", "failed", "lost"}) == "cancelled"
        code, out, _ = ds("jobs", "show", "2", token=bob, server=again)
        assert '"exit_code": 75' in out
        code, out, _ = ds("tenants", "audit", "--tenant", "acme", token=admin, server=again)
        assert "job.reattach" in out and "job.cancelled" in out and "job.succeeded" in out
    finally:
        again.kill()
    assert again.proc.stdout.read() == ""  # not a new database: no second bootstrap token


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


def test_the_commands_import_neither_torch_nor_the_server_stack() -> None:
    code = ("import sys, deepseek_enterprise.service.cli, deepseek_enterprise.service.server_cli; "
            "print(sorted(m for m in ('torch', 'fastapi', 'sqlalchemy', 'httpx', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_executors_are_registered_components(tmp_path: Path) -> None:
    from deepseek_enterprise.service.executor import Executor, LocalExecutor

    assert HOST.resolve("executor", "local").load() is LocalExecutor and issubclass(LocalExecutor, Executor)
    dead = Dead("http://127.0.0.1:1")
    root = tmp_path / "never"
    code, _out, err = ds("server", "--executor", "locl", "--root", str(root), server=dead)
    _one_line_error((code, _out, err), "locl")
    assert "local" in err and not root.exists()


def test_a_database_of_an_older_build_is_one_line_and_left_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    from deepseek_enterprise.service.store import Store

    db = tmp_path / "old.db"
    Store(f"sqlite:///{db}").engine.dispose()
    with sqlite3.connect(db) as conn:  # what a build before the requeue policy left: no jobs.attempts
        conn.execute("ALTER TABLE jobs DROP COLUMN attempts")
    before = db.read_bytes()
    dead = Dead("http://127.0.0.1:1")
    result = ds("server", "--root", str(tmp_path / "root"), "--db", f"sqlite:///{db}", server=dead)
    _one_line_error(result, "the database was made by an older deepseek-enterprise and lacks the columns jobs.attempts")
    assert db.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"this is not a database\n" * 40], ids=["emptied", "garbage"])
def test_a_service_db_that_is_no_database_is_refused_and_left_as_it_was(tmp_path: Path, content: bytes) -> None:
    root = tmp_path / "root"
    (root / "tenants" / "acme" / "jobs" / "1").mkdir(parents=True)
    (root / "service.db").write_bytes(content)
    result = ds("server", "--root", str(root), server=Dead("http://127.0.0.1:1"))
    _one_line_error(result, f"the service database {root / 'service.db'} ")
    assert ("is empty" if not content else "is not an SQLite database") in result[2]
    assert (root / "service.db").read_bytes() == content and not (root / "service.db-wal").exists()


def test_a_new_database_beside_the_workspaces_of_another_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "tenants" / "acme" / "jobs" / "1").mkdir(parents=True)
    dead = Dead("http://127.0.0.1:1")
    result = ds("server", "--root", str(root), server=dead)  # service.db removed: job 1 would collide
    _one_line_error(result, "holds the job workspaces of another database (tenants/*/jobs/), but its service.db is missing")
    assert not (root / "service.db").exists()
    other = tmp_path / "other.db"
    from deepseek_enterprise.service.store import Store

    Store(f"sqlite:///{other}").engine.dispose()  # a database with tables but no users
    result = ds("server", "--root", str(root), "--db", f"sqlite:///{other}", server=dead)
    _one_line_error(result, "but the --db database is new")


@pytest.mark.parametrize(("argv", "words"), [
    (["--host", "999.1.1.1"], "--host '999.1.1.1': cannot listen there"),
    (["--grace", "nan"], "'--grace': 'nan' is not a finite number"),
], ids=["host not of this machine", "grace NaN"])
def test_a_bad_address_or_grace_is_one_line_before_anything_is_made(tmp_path: Path, argv: list[str],
                                                                    words: str) -> None:
    root = tmp_path / "root"  # uvicorn's own error (exit 3) came after a new database and its admin token
    result = ds("server", "--root", str(root), "--port", str(free_port()), *argv, server=Dead("http://127.0.0.1:1"))
    _one_line_error(result, words)
    assert not root.exists() and not result[1]


def test_a_port_in_use_is_one_line_before_anything_is_made(tmp_path: Path) -> None:
    import socket

    root = tmp_path / "root"
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = ds("server", "--root", str(root), "--port", str(port), server=Dead("http://127.0.0.1:1"))
    _one_line_error(result, f"--port {port}: another program listens on 127.0.0.1:{port}")
    assert not root.exists() and not result[1]


def _filled_db(path: Path) -> str:
    """A service database holding one row of each kind a tampering test edits."""
    from deepseek_enterprise.service.models import Job, Membership, Quota, Tenant, User
    from deepseek_enterprise.service.store import Store

    url = f"sqlite:///{path}"
    store = Store(url)
    store.bootstrap("admin")
    with store.session() as s:
        tenant, user = Tenant(name="acme", quota=Quota()), User(name="bob")
        s.add_all([tenant, user])
        s.flush()
        s.add(Membership(user_id=user.id, tenant_id=tenant.id, role="member"))
        s.add(Job(tenant_id=tenant.id, user_id=user.id, command="eval", args=["--batches", "1"], files={"a.toml": ""}))
    store.engine.dispose()
    return url


TAMPERED = {  # what a hand edit of the service database can leave; each was an internal error (500) in later requests
    "job date": ("UPDATE jobs SET created_at = 'yesterday'", "column created_at holds 'yesterday', not a date and time"),
    "job args": ("UPDATE jobs SET args = '{{{'", "column args holds '{{{', not JSON"),
    "job args type": ("UPDATE jobs SET args = '\"--batches 1\"'", "column args holds '--batches 1', not a list of strings"),
    "job state": ("UPDATE jobs SET state = 'bogus'", "column state holds 'bogus', not one of queued"),
    "job exit code": ("UPDATE jobs SET exit_code = 'x'", "column exit_code holds 'x', not a whole number"),
    "quota type": ("UPDATE quotas SET devices = 'abc'", "column devices holds 'abc', not a whole number"),
    "negative quota": ("UPDATE quotas SET running_jobs = -5", "column running_jobs holds -5: Input should be greater"),
    "quota range": ("UPDATE quotas SET gpu_memory_fraction = 9.5", "column gpu_memory_fraction holds 9.5"),
    "token date": ("UPDATE tokens SET expires_at = 'never'", "table tokens, row with id 1: column expires_at holds 'never'"),
    "role": ("UPDATE memberships SET role = 'god'", "column role holds 'god', not one of viewer, member, admin"),
    "tenant name": ("UPDATE tenants SET name = '../evil'", "column name holds '../evil', not a tenant or user name"),
    # SQLite does not enforce references: listing the tenant's jobs was a 500 (the job's user had no
    # name), and a job naming no tenant stayed queued unseen for ever
    "job user": ("UPDATE jobs SET user_id = 99",
                 "table jobs, row with id 1: column user_id holds 99, which names no row of users"),
    "job tenant": ("UPDATE jobs SET tenant_id = 99",
                   "table jobs, row with id 1: column tenant_id holds 99, which names no row of tenants"),
    "member": ("UPDATE memberships SET user_id = 99", "table memberships, row with id 1: column user_id holds 99, "
               "which names no row of users"),
    # the audit log is append-only (its triggers refuse UPDATE), but a row can be added by hand
    "audit date": ("INSERT INTO audit (at, actor, tenant, action, target, result) VALUES ('soon', 'x', '', 'y', '', 'ok')",
                   "table audit, row with id 2: column at holds 'soon', not a date and time"),
    "audit length": (f"INSERT INTO audit (at, actor, tenant, action, target, result) VALUES ('2026-01-01 00:00:00', "
                     f"'x', '', 'y', '{'t' * 300}', 'ok')", "column target holds 300 characters, more than its 255"),
    "audit blob": ("INSERT INTO audit (id, at, actor, tenant, action, target, result) VALUES (99, '2026-01-01', "
                   "X'0102', '', 'y', '', 'ok')", "table audit, row with id 99: column actor holds b'\\x01\\x02', not text"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_row_is_refused_when_the_store_opens(tmp_path: Path, case: str) -> None:
    import sqlite3

    from deepseek.errors import UsageError
    from deepseek_enterprise.service.store import Store

    url = _filled_db(tmp_path / "service.db")
    Store(url).engine.dispose()  # the untouched database opens
    sql, words = TAMPERED[case]
    with sqlite3.connect(tmp_path / "service.db") as conn:
        conn.execute(sql)
    conn.close()
    with pytest.raises(UsageError) as info:
        Store(url)
    assert words in str(info.value) and "repair that value" in str(info.value), str(info.value)


def test_the_server_refuses_a_tampered_database_in_one_line_and_leaves_it(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "service.db"
    url = _filled_db(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE jobs SET created_at = 'yesterday'")
    conn.close()
    before = db.read_bytes()
    result = ds("server", "--root", str(tmp_path / "root"), "--db", url, server=Dead("http://127.0.0.1:1"))
    _one_line_error(result, "table jobs, row with id 1: column created_at holds 'yesterday', not a date and time")
    assert db.read_bytes() == before


def test_the_audit_listing_prints_what_a_request_named_on_one_line(tmp_path: Path) -> None:
    """A refused request is audited with the tenant and names its URL gave, any characters: a
    member asking for a token of a user named with a terminal escape and a line break got them
    printed raw to the admin's terminal by ``deepseek tenants audit``. Each field a request can
    fill is printed escaped, on one line."""
    from _servicehelpers import deploy
    from _servicelive import live

    d = deploy(tmp_path / "srv")
    try:
        d.tenant("acme")
        r = d.call("POST", "/v1/tenants/acme/users/%1b%5b2Jx%0ay/tokens", d.user("acme", "bob", "member"), json={})
        assert r.status_code == 404, r.text
        with live(d) as srv:
            code, out, err = run_cli("tenants", "audit", "--tenant", "acme", token=d.admin, url=srv.url)
    finally:
        d.close()
    assert code == 0 and "\x1b" not in out, err
    [line] = [line for line in out.splitlines() if "token.create" in line and "refused" in line]
    assert line.endswith(" acme         token.create   $'user \\x1b[2Jx\\ny': refused 404: no user "
                         "'\\x1b[2Jx\\ny' in tenant 'acme'"), line
