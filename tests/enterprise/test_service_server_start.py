"""``deepseek server`` refusing what it is given before it serves (in its own process, nothing
listening): an unknown executor, a database of an older build, no database, another's workspaces,
a bad address, a port in use, rows edited by hand; one line, exit code 2, and nothing changed. And
an option reaching the service it serves (``--no-study-check``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _servicehelpers import CLI_HOST as HOST
from _servicehelpers import free_port, one_line_error, run_cli


def server_cmd(*argv: str) -> tuple[int, str, str]:
    """``deepseek server ARGV`` (it refuses them before it listens: no client talks to it)."""
    return run_cli("server", *argv, token=None, url="http://127.0.0.1:1")


def test_executors_are_registered_components(tmp_path: Path) -> None:
    from deepseek_enterprise.service.executor import Executor, LocalExecutor

    assert HOST.resolve("executor", "local").load() is LocalExecutor and issubclass(LocalExecutor, Executor)
    root = tmp_path / "never"
    code, _out, err = server_cmd("--executor", "locl", "--root", str(root))
    one_line_error((code, _out, err), "locl")
    assert "local" in err and not root.exists()


def test_a_database_of_an_older_build_is_one_line_and_left_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    from deepseek_enterprise.service.store import Store

    db = tmp_path / "old.db"
    Store(f"sqlite:///{db}").engine.dispose()
    with sqlite3.connect(db) as conn:  # what a build before the requeue policy left: no jobs.attempts
        conn.execute("ALTER TABLE jobs DROP COLUMN attempts")
    before = db.read_bytes()
    result = server_cmd("--root", str(tmp_path / "root"), "--db", f"sqlite:///{db}")
    one_line_error(result, "the database was made by an older deepseek-enterprise and lacks the columns jobs.attempts")
    assert db.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"this is not a database\n" * 40], ids=["emptied", "garbage"])
def test_a_service_db_that_is_no_database_is_refused_and_left_as_it_was(tmp_path: Path, content: bytes) -> None:
    root = tmp_path / "root"
    (root / "tenants" / "acme" / "jobs" / "1").mkdir(parents=True)
    (root / "service.db").write_bytes(content)
    result = server_cmd("--root", str(root))
    one_line_error(result, f"the service database {root / 'service.db'} ")
    assert ("is empty" if not content else "is not an SQLite database") in result[2]
    assert (root / "service.db").read_bytes() == content and not (root / "service.db-wal").exists()


def test_a_new_database_beside_the_workspaces_of_another_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "tenants" / "acme" / "jobs" / "1").mkdir(parents=True)
    result = server_cmd("--root", str(root))  # service.db removed: job 1 would collide
    one_line_error(result, "holds the job workspaces of another database (tenants/*/jobs/), but its service.db is missing")
    assert not (root / "service.db").exists()
    other = tmp_path / "other.db"
    from deepseek_enterprise.service.store import Store

    Store(f"sqlite:///{other}").engine.dispose()  # a database with tables but no users
    result = server_cmd("--root", str(root), "--db", f"sqlite:///{other}")
    one_line_error(result, "but the --db database is new")


@pytest.mark.parametrize(("argv", "words"), [
    (["--host", "999.1.1.1"], "--host '999.1.1.1': cannot listen there"),
    (["--grace", "nan"], "'--grace': 'nan' is not a finite number"),
], ids=["host not of this machine", "grace NaN"])
def test_a_bad_address_or_grace_is_one_line_before_anything_is_made(tmp_path: Path, argv: list[str],
                                                                    words: str) -> None:
    root = tmp_path / "root"  # uvicorn's own error (exit 3) came after a new database and its admin token
    result = server_cmd("--root", str(root), "--port", str(free_port()), *argv)
    one_line_error(result, words)
    assert not root.exists() and not result[1]


def test_a_refused_database_leaves_no_new_root_behind(tmp_path: Path) -> None:
    """A --db the server refuses (no database) came after the new --root (and its missing parents)
    was made: an empty folder with server.lock was left, though nothing was served."""
    db = tmp_path / "not.db"
    db.write_bytes(b"this is not a database\n" * 40)
    root = tmp_path / "new" / "root"
    result = server_cmd("--root", str(root), "--port", str(free_port()), "--db", f"sqlite:///{db}")
    one_line_error(result, f"the service database {db} is not an SQLite database")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not.db"]
    (tmp_path / "new").mkdir()  # a parent that was there stays
    one_line_error(server_cmd("--root", str(root), "--port", str(free_port()), "--db", f"sqlite:///{db}"),
                   "is not an SQLite database")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "not.db"] and list((tmp_path / "new").iterdir()) == []


def test_a_database_that_cannot_be_opened_is_one_line_and_leaves_no_root(tmp_path: Path) -> None:
    """An SQLite --db in a folder that is missing (or is a file) failed on SQLAlchemy's
    OperationalError at the first connection: 'internal error: OperationalError: ... unable to open
    database file', exit code 1, and the new root with its server.lock was left behind."""
    (tmp_path / "afile").write_text("")
    root = tmp_path / "root"
    for db in (tmp_path / "missing" / "service.db", tmp_path / "afile" / "service.db"):
        result = server_cmd("--root", str(root), "--port", str(free_port()), "--db", f"sqlite:///{db}")
        one_line_error(result, f"--db sqlite:///{db}: cannot open the database (unable to open database file); "
                               "give a file in an existing folder")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize(("url", "shown", "words"), [
    ("postgresql+nodriver://svc:s3cret@db/x", "postgresql+nodriver://svc:***@db/x", "NoSuchModuleError"),
    ("postgresql://svc:s3cret@db:port/x", "postgresql://svc:***@db:port/x", "ValueError"),  # not parsable
    ("postgresql//svc:s3cret@db/x", "postgresql//svc:***@db/x", "ArgumentError"),  # no URL: was shown as given
    # a password as a query parameter was shown as given (only USER:PASSWORD@ was masked)
    ("postgresql+nodriver://svc@db/x?sslmode=require&password=s3cret", "postgresql+nodriver://svc@db/x?sslmode=require"
     "&password=***", "NoSuchModuleError"),
], ids=["unknown driver", "bad port", "no URL", "query password"])
def test_a_db_url_the_server_cannot_use_is_one_line_without_its_password(tmp_path: Path, url: str, shown: str,
                                                                         words: str) -> None:
    """--db's unknown dialect or driver, or an unparsable URL, was shown as given (repr), password
    and all, though docs/service.md offers DEEPSEEK_DB_URL to keep the password off the command line;
    and the line said nothing of how to fix it."""
    result = server_cmd("--root", str(tmp_path / "root"), "--port", str(free_port()), "--db", url)
    one_line_error(result, f"--db {shown}: {words}: ")
    assert "s3cret" not in result[2] and result[2].rstrip().endswith(
        "; give an SQLAlchemy URL whose driver is installed, e.g. sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u@h/db?sslpassword=s3cret&sslmode=require", "postgresql://u@h/db?sslpassword=***&sslmode=require"),
    ("postgresql://u:s3cret@h/db?PASS=s3cret", "postgresql://u:***@h/db?PASS=***"),
    ("postgresql://u@h/db?pwd=s3cret;x=1", "postgresql://u@h/db?pwd=***;x=1"),
    ("host=h password='s3 cret' dbname=db", "host=h password=*** dbname=db"),  # libpq's keyword string
    ("host=h Password = s3cret", "host=h Password = ***"),
    ("sqlite:///srv/passwords/service.db", "sqlite:///srv/passwords/service.db"),  # a path: no key, no value
    # a percent-encoded key (drivers decode it) was shown as given, its value unmasked
    ("postgresql://u@h/db?pass%77ord=s3cret&sslmode=require", "postgresql://u@h/db?pass%77ord=***&sslmode=require"),
    ("postgresql//u@h/db?%50ASSWORD=s3cret", "postgresql//u@h/db?%50ASSWORD=***"),  # not parsable
    ("postgresql://u@h/db?a%62c=1", "postgresql://u@h/db?a%62c=1"),  # an encoded key that names no secret
])
def test_a_password_given_as_a_key_is_masked_too(url: str, shown: str) -> None:
    """db_url.shown_url masked USER:PASSWORD@ only: a password in a query string or a libpq keyword
    string was echoed in --db and --storage lines as given."""
    from deepseek_enterprise.db_url import shown_url

    assert shown_url(url) == shown


def test_an_empty_root_is_refused_as_every_empty_path_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--root ''`` was read as the current folder: the server took it (server.lock, service.db,
    the tenants' workspaces beside whatever the folder held), where every other path option refuses
    an empty path (deepseek.cli.params.PATH). The port is in use, so a root taken fails on it."""
    import socket

    monkeypatch.chdir(tmp_path)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        result = server_cmd("--root", "", "--port", str(other.getsockname()[1]))
    assert result == (2, "", "error: Invalid value for '--root': '' is an empty path; give a file or folder path ('.' for "
                             "the current folder) (see 'deepseek server --help')\n")
    assert list(tmp_path.iterdir()) == []


def test_a_port_in_use_is_one_line_before_anything_is_made(tmp_path: Path) -> None:
    import socket

    root = tmp_path / "root"
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = server_cmd("--root", str(root), "--port", str(port))
    one_line_error(result, f"--port {port}: another program listens on 127.0.0.1:{port}")
    assert not root.exists() and not result[1]


@pytest.mark.parametrize(("argv", "checked"), [([], True), (["--no-study-check"], False)],
                         ids=["default", "--no-study-check"])
def test_the_study_check_option_reaches_the_service_it_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              argv: list[str], checked: bool) -> None:
    # the real command, in this process, up to the app it would serve: uvicorn's loop is replaced by
    # one that keeps the app and returns (the server then stops as after a signal)
    import uvicorn

    served: list = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(self.config.app))
    code, out, err = server_cmd("--root", str(tmp_path / "root"), "--port", str(free_port()), "--cgroup", "none",
                                "--devices", "none", *argv)
    assert code == 0 and out.startswith("new database"), err
    [app] = served
    try:
        assert app.state.service.study_check is checked  # Service.study_check: what a tune submit asks
    finally:
        app.state.service.store.engine.dispose()


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
    result = server_cmd("--root", str(tmp_path / "root"), "--db", url)
    one_line_error(result, "table jobs, row with id 1: column created_at holds 'yesterday', not a date and time")
    assert db.read_bytes() == before
