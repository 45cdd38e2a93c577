"""``deepseek server``: the job service in one process (API, scheduler, local executor).

A new database gets a platform admin (``--admin``, default ``admin``) and its token, printed once
on stdout. Jobs and their artefacts live under ``--root``; the database defaults to SQLite in WAL
mode inside it. Nothing here imports torch, FastAPI or SQLAlchemy at module level.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deepseek.cli.params import FiniteFloat
from deepseek.errors import UsageError
from deepseek_enterprise.cli_params import PATH_ARG

if TYPE_CHECKING:
    from deepseek_enterprise.service.store import Store


def hold_root(root: Path) -> int:
    """An exclusive lock on ``ROOT/server.lock`` (the descriptor, close-on-exec: no job inherits
    it); UsageError when another server holds it. Two schedulers on one root would each take the
    other's jobs left ``starting`` for jobs a killed server left, and start them again."""
    import fcntl

    fd = os.open(root / "server.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"--root {root}: another deepseek server runs on it (it holds {root / 'server.lock'}); "
                         "run one server per root and database") from None
    return fd


def listen_socket(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound to ``host:port`` as uvicorn binds it (IPv6 when the
    host has a ``:``), before the root or the database is touched: an address this machine does not
    have, or a port in use, is one line (uvicorn logged the error, exit 3, after a new database
    and its admin token were made)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise UsageError(f"--port {port}: another program listens on {host}:{port} ({reason}); stop it, "
                             "or give another --port") from None
        raise UsageError(f"--host {host!r}: cannot listen there ({reason}); give an address of this machine, "
                         "such as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    sock.set_inheritable(True)
    return sock


def detect_gpus(spec: str) -> list[str]:
    """``--devices``: ``none``, ``auto`` (``nvidia-smi -L``) or a comma-separated list of indices."""
    if spec == "none" or spec == "":
        return []
    if spec == "auto":
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return []
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    items = [x.strip() for x in spec.split(",")]
    if not all(x.isdigit() for x in items) or len(set(items)) != len(items):
        raise UsageError(f"--devices {spec!r}: use none, auto or distinct GPU indices such as 0,1,2")
    return items


def check_root_matches(root: Path, url: str, store: Store | None) -> None:
    """One line when ``--root`` holds job workspaces but the database is new (its file missing, or
    no users in it): they belong to another database, and this one's job 1 would be written over
    the old job 1's workspace. Called before the store opens ``url`` (a missing SQLite file) and
    after (a database without users)."""
    from deepseek_enterprise.service.jobpaths import tenant_dir
    from deepseek_enterprise.sqlite_files import sqlite_database

    if not any(tenant_dir(root, "").glob("*/jobs/*")):
        return
    if store is None:
        database = sqlite_database(url)
        if not database or database == ":memory:" or database.startswith("file:") or Path(database).exists():
            return
    elif not store.is_new():
        return
    default = url == f"sqlite:///{root / 'service.db'}"
    raise UsageError(f"--root {root}: holds the job workspaces of another database (tenants/*/jobs/), but "
                     f"{'its service.db is missing' if default else 'the --db database is new'}: give the "
                     "database they belong to with --db, or pick a new --root")


def pick_executor(name: str) -> tuple[type, str]:
    """The registered executor ``name`` (a subclass of ``Executor``) and how messages name it,
    its registration's label (``executor 'NAME' (DIST VERSION, registered by MODULE)``)."""
    from deepseek.cli.context import command_host
    from deepseek.errors import PluginError
    from deepseek_enterprise.service.executor import Executor

    host = command_host()
    host.check_kind("executor")
    component = host.resolve("executor", name)
    target = component.load()
    origin = component.label
    if not (isinstance(target, type) and issubclass(target, Executor)):
        raise PluginError(f"--executor {name}: {origin}: registered as {target!r}, not a subclass of "
                          "deepseek_enterprise.service.executor.Executor; its plugin must register an Executor "
                          "subclass (docs/service.md)")
    return target, origin


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8600, show_default=True)
@click.option("--root", type=PATH_ARG, default="deepseek-service", show_default=True,
              help="Folder of the tenants' workspaces (and of the default database).")
@click.option("--db", "db_url", envvar="DEEPSEEK_DB_URL", metavar="URL",
              help="SQLAlchemy URL (default sqlite:///ROOT/service.db; env DEEPSEEK_DB_URL keeps a password "
                   "off the command line).")
@click.option("--slots", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="Jobs running at once on this machine, all tenants together.")
@click.option("--devices", "devices_spec", default="auto", show_default=True,
              help="GPU pool: auto (nvidia-smi), none, or indices such as 0,1.")
@click.option("--grace", type=FiniteFloat(0, 3600), default=30.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL when a running job is cancelled.")
@click.option("--admin", "admin_name", default="admin", show_default=True,
              help="Name of the platform admin a new database gets.")
@click.option("--requeue-lost", "requeue_lost", type=click.IntRange(0, 100), default=0, show_default=True,
              metavar="N", help="Requeue a job found gone (no exit code) up to N times; 0: it stays lost.")
@click.option("--executor", "executor_name", default="local", show_default=True, metavar="NAME",
              help="Registered job executor (deepseek plugins list).")
@click.option("--cgroup", "cgroup_spec", default=None, metavar="auto|none|DIR",
              help="Local executor's host limits: cgroup v2 under DIR, auto (the server's own cgroup when "
                   "writable; rlimits otherwise), none (rlimits). Default: auto.")
@click.option("--study-check/--no-study-check", "study_check", default=True, show_default=True,
              help="Check a tune job's study at submit, in a child process (seconds of CPU each); "
                   "--no-study-check: the job checks it when it runs.")
def server(host: str, port: int, root: Path, db_url: str | None, slots: int, devices_spec: str, grace: float,
           admin_name: str, executor_name: str, cgroup_spec: str | None, requeue_lost: int = 0,
           study_check: bool = True) -> None:
    """Run the multi-tenant job server (HTTP API, scheduler, local executor); docs/service.md."""
    import re

    from deepseek.paths import check_output, folders_made
    from deepseek_enterprise.service import cgroups
    from deepseek_enterprise.service.executor import LocalExecutor

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", admin_name):
        raise UsageError(f"--admin {admin_name!r}: use lower-case letters, digits and '-'")
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root}: exists and is not a folder")
    executor_cls, origin = pick_executor(executor_name)
    local = issubclass(executor_cls, LocalExecutor)
    if cgroup_spec is not None and not local:
        raise UsageError(f"--cgroup applies to the local executor only, not to --executor {executor_name}")
    limits = cgroups.detect(cgroup_spec or "auto") if local else None
    gpus = detect_gpus(devices_spec)
    root = root.resolve()
    # the executor refuses what it cannot work with (Slurm's commands missing ...) before anything is created
    executor = executor_cls(root, grace_s=grace, limits=limits) if local else executor_cls(root, grace_s=grace)
    # held for the server's life: a second server would resolve this one's starts; on a root that
    # exists, taken before the port (another server on it is named as such, not as its port in use)
    held = hold_root(root) if root.is_dir() else None
    try:
        sock = listen_socket(host, port)  # before a new root is made
        made = check_output(root, where="--root", folder=True) if held is None else []
        try:
            # a new root (and its missing parents) is removed again when the database is refused
            with folders_made(made, where="--root"):
                if held is None:
                    root.chmod(0o700)  # before anything is written in it
                    held = hold_root(root)
                try:
                    _serve(root, db_url, admin_name, _Serving(executor, executor_name, limits, slots, gpus,
                                                              requeue_lost, origin, study_check),
                           host, port, sock)
                except UsageError:
                    if made:
                        (root / "server.lock").unlink(missing_ok=True)
                    raise
        finally:
            sock.close()
    finally:
        if held is not None:
            os.close(held)  # also when the database is refused (a server called from Python lets go)


@dataclass(frozen=True)
class _Serving:
    """What ``deepseek server`` runs once its root is held: the executor, the scheduler's settings and
    whether a ``tune`` job's study is checked at submit (``--study-check``)."""

    executor: Any
    executor_name: str
    limits: Any  # cgroups.Detection of the local executor, None for another
    slots: int
    gpus: list[str]
    requeue_lost: int
    origin: str
    study_check: bool = True


def _serve(root: Path, db_url: str | None, admin_name: str, run: _Serving, host: str, port: int,
           sock: socket.socket) -> None:
    """Open the database (refusing one that is not this root's), then run the scheduler and the
    API until the server is stopped."""
    import uvicorn

    from deepseek.cli.context import command_host
    from deepseek_enterprise.service.api import Service, create_app
    from deepseek_enterprise.service.executor_base import plugin_env, plugins_jobs_lack
    from deepseek_enterprise.service.scheduler import Scheduler
    from deepseek_enterprise.service.store import Store

    url = db_url or f"sqlite:///{root / 'service.db'}"
    check_root_matches(root, url, store=None)
    store = Store(url)
    check_root_matches(root, url, store=store)
    token = store.bootstrap(admin_name)
    if token is not None:
        click.echo(f"new database: platform admin {admin_name!r}, token (shown once, only its hash is kept):")
        click.echo(token)
    # every job runs with the plugin settings its command line is checked with at submit: the
    # server's, root options included (deepseek --plugins pro,enterprise server), given as data
    scheduler = Scheduler(store, run.executor, slots=run.slots, gpus=run.gpus, requeue_lost=run.requeue_lost,
                          origin=run.origin, plugin_env=plugin_env(command_host().settings))
    scheduler.start()
    click.echo(f"deepseek server on http://{host}:{port} (root {root}, {run.slots} slot(s), "
               f"devices {','.join(run.gpus) or 'none'}, executor {run.executor_name})", err=True)
    if run.limits is not None:
        click.echo(f"job limits: {run.limits.summary()}", err=True)
    for line in plugins_jobs_lack(command_host().records.values(), run.executor):
        click.echo(f"warning: {line}", err=True)
    os.environ.pop("DEEPSEEK_TOKEN", None)
    try:
        app = create_app(Service(store, root, scheduler=scheduler, pool_size=len(run.gpus), host=command_host(),
                                     study_check=run.study_check))
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
    finally:
        scheduler.stop()
