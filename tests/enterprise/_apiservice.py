"""The populated job service the HTTP API tests start from (test_service_api*.py): two tenants,
their users and tokens, made once a module per database and copied for each test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servicehelpers import Deploy, copy_postgres_rows, database, deploy

from deepseek_enterprise.service.store import Store


def populated(d: Deploy) -> Deploy:
    """``d`` with the tenants, users and tokens every test here starts from."""
    d.tenant("acme", running_jobs=1, queued_jobs=3, devices=0)
    d.tenant("globex", running_jobs=1, queued_jobs=3)
    for name, role in (("ann", "admin"), ("bob", "member"), ("cat", "member"), ("vic", "viewer")):
        d.user("acme", name, role)
    d.user("globex", "gil", "admin")
    return d


def sqlite_template(factory: pytest.TempPathFactory) -> Deploy:
    """A populated SQLite server's folder, closed, made once a module: each test opens a copy of it
    (its twelve set-up requests, each hashing or verifying a token with scrypt, cost seconds a test)."""
    d = populated(deploy(factory.mktemp("template") / "srv"))
    d.close()
    return d


def postgresql_template(factory: pytest.TempPathFactory) -> Iterator[tuple[str, Deploy]]:
    """The same for PostgreSQL: a populated server's schema (its URL) and the closed server, kept
    for the module; each test copies its rows into a schema of its own."""
    with database("postgresql", factory.mktemp("template") / "srv") as url:
        d = populated(deploy(factory.mktemp("template") / "srv", db_url=url))
        d.close()
        yield url, d


def copy_of_template(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deploy]:
    """A server opened on a copy of the module's template for ``request.param``'s database (the
    module's ``sqlite_template`` or ``postgresql_template`` fixture)."""
    template: Deploy
    if request.param == "sqlite":  # a copy of the template: the same database a new server's set-up writes
        template = request.getfixturevalue("sqlite_template")
        shutil.copytree(template.root, tmp_path / "srv")
        d = deploy(tmp_path / "srv")
        d.admin, d.tokens = template.admin, dict(template.tokens)
        yield d
        d.close()
        return
    with database(request.param, tmp_path / "srv") as url:  # skips without PostgreSQL
        source, template = request.getfixturevalue("postgresql_template")
        Store(url).engine.dispose()  # the tables and triggers, empty
        copy_postgres_rows(source, url)
        d = deploy(tmp_path / "srv", db_url=url)
        d.admin, d.tokens = template.admin, dict(template.tokens)
        yield d
        d.close()
