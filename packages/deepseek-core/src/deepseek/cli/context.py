"""TEMPORARY (replaced by the explicit-host branch): the host a command runs with."""

from __future__ import annotations

from typing import Any


def command_host(ctx: Any = None) -> Any:
    from deepseek.plugins.host import get_host

    return get_host()
