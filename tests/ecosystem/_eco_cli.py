"""The one way the ecosystem tests run ``deepseek`` in-process on a given plugin host."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from deepseek.cli.main import main
from deepseek.plugins.host import PluginHost


def run(host: PluginHost, *argv: str) -> tuple[int, str, str]:
    """``deepseek ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv), host=host)
        except SystemExit as exc:
            code = exc.code or 0
    return int(code), out.getvalue(), err.getvalue()


def ok(host: PluginHost, *argv: str) -> str:
    """stdout of ``deepseek ARGV``, which must succeed."""
    code, out, err = run(host, *argv)
    assert code == 0, err
    return out


def refused(host: PluginHost, *argv: str) -> str:
    """The one error line of ``deepseek ARGV``, which must be refused (exit 2)."""
    code, out, err = run(host, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    assert "Traceback" not in err
    return lines[0]
