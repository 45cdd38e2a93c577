"""The names of tenants and users, the roles and the job states: one rule for the server
(:mod:`.api_admin`'s request models, :mod:`.models`) and the command-line clients, which refuse a
name the server would not have before any request (a name with ``/`` or ``..`` would otherwise
change the request's URL) and check the server's answers with them (:mod:`.answers`). Nothing here
imports the server."""

from __future__ import annotations

import re
from typing import Any

import click

ROLES = ("viewer", "member", "admin")
"""Roles in a tenant, weakest first: viewer reads, member also submits and cancels its own jobs,
admin also manages the tenant's users and cancels any of its jobs."""

JOB_STATES = ("queued", "starting", "running", "succeeded", "failed", "cancelled", "lost")
"""The states of a job (``models.Job.state``; the clients check the server's answers with them)."""

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
"""Tenant and user names: lower-case letters, digits and '-' (a tenant name is a folder name)."""
_NAME = re.compile(NAME)


def name_problem(value: str) -> str | None:
    """Why ``value`` is no tenant or user name (``None``: it is one)."""
    if _NAME.fullmatch(value):
        return None
    return (f"{value!r} is not a tenant or user name: 1-63 lower-case letters, digits and '-', "
            "starting with a letter or digit")


class ServiceName(click.ParamType):
    """A tenant or user name on the command line, checked by :func:`name_problem`."""

    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = name_problem(str(value))
        if problem:
            self.fail(problem, param, ctx)
        return str(value)


SERVICE_NAME = ServiceName()
TENANT = click.option("--tenant", type=SERVICE_NAME, metavar="NAME",
                      help="Tenant (default: DEEPSEEK_TENANT, or your only tenant).")
"""The ``--tenant`` option of every client command."""


TOKEN_LABEL = r"^[^\x00-\x1f\x7f]*$"
"""A token's label (``tenants token --name``): one line, no control characters (PostgreSQL refuses
a NUL in a text column)."""
TOKEN_LABEL_MAX = 63
"""The most characters a token's label has (the ``tokens.name`` column)."""


class TokenLabel(click.ParamType):
    """``tenants token --name``, checked as the server checks it (:data:`TOKEN_LABEL`,
    :data:`TOKEN_LABEL_MAX`) before any request: the server's refusal quoted its pattern."""

    name = "label"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        bad = next((c for c in text if not re.fullmatch(TOKEN_LABEL, c)), None)
        if bad is not None:
            self.fail(f"{text!r} holds the control character U+{ord(bad):04X}; give a label of one line of "
                      "printable characters", param, ctx)
        if len(text) > TOKEN_LABEL_MAX:
            self.fail(f"{len(text)} characters, more than {TOKEN_LABEL_MAX}; give a shorter label", param, ctx)
        return text


class TokenId(click.ParamType):
    """A token's id on the command line (``tenants revoke``), checked by
    :func:`.tokens.token_id_problem` before any request."""

    name = "token_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from deepseek_enterprise.service.tokens import token_id_problem

        problem = token_id_problem(str(value))
        if problem:
            self.fail(problem, param, ctx)
        return str(value)
