"""``deepseek server`` for real (uvicorn on a free port, in its own process) driven by ``deepseek
tenants`` and ``deepseek jobs``; the server killed with SIGKILL while a job runs and restarted:
the job is re-attached and can still be cancelled, its exit code read back; what the commands
import and what the audit listing prints. The server refusing its arguments or database:
test_service_server_start.py; the clients checking answers and input: test_service_client_checks.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servicehelpers import TINY_TRAIN, ServerProcess, free_port, one_line_error, run_cli


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
    # every job would have waited for ever: the client refuses it by the server's range (quota_ranges)
    one_line_error(ds("tenants", "create", "acme", "--running-jobs", "0", token=admin, server=server),
                    "'--running-jobs': 0 is not in the range 1<=x<=")
    assert ds("tenants", "create", "acme", "--running-jobs", "2", token=admin, server=server)[0] == 0
    one_line_error(ds("tenants", "quota", "acme", "--running-jobs", "0", token=admin, server=server),
                   "'--running-jobs': 0 is not in the range 1<=x<=")
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
    one_line_error(ds("jobs", "submit", "train", "--run-dir", "/etc", token=bob, server=server), "outside the tenant")
    one_line_error(ds("jobs", "show", "1", token=gil, server=server), "404: no job 1 in tenant 'globex'")
    one_line_error(ds("jobs", "show", "1", "--tenant", "acme", token=gil, server=server), "404: no tenant 'acme'")
    one_line_error(ds("jobs", "list", token=bob[:-1] + "x", server=server), "401: invalid token")
    one_line_error(ds("tenants", "create", "x", token=bob, server=server), "403: this needs a platform admin")
    one_line_error(ds("jobs", "list", token=None, server=server), "no token: set DEEPSEEK_TOKEN")
    dead = Dead(f"http://127.0.0.1:{free_port()}")
    one_line_error(ds("jobs", "list", token=bob, server=dead), "cannot reach the server")

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


def test_the_commands_import_neither_torch_nor_the_server_stack() -> None:
    code = ("import sys, deepseek_enterprise.service.cli, deepseek_enterprise.service.server_cli; "
            "print(sorted(m for m in ('torch', 'fastapi', 'sqlalchemy', 'httpx', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


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
