"""The lines ``deepseek`` itself prints, run in this process, for the submit-check tests to compare
the server's refusals with (``service.jobcheck``)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from _exitstatus import exit_status
from _servicehelpers import CLI_HOST

from deepseek.cli.main import main
from deepseek.plugins.host import PluginHost
from deepseek_enterprise.service.jobcheck import job_argv


def run_in(folder: Path, argv: list[str], host: PluginHost = CLI_HOST) -> tuple[int, str, str]:
    """``deepseek ARGV`` in this process, in ``folder``, on ``host``: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv, host=host)
                code = 0
            except SystemExit as exc:
                code = exit_status(exc.code, err)
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


def cli_line(folder: Path, argv: list[str], host: PluginHost = CLI_HOST, code: int = 2) -> str:
    """The one line ``deepseek ARGV`` prints as it exits with ``code``."""
    got, _, err = run_in(folder, argv, host)
    lines = err.strip().splitlines()
    assert got == code and len(lines) == 1 and lines[0].startswith("error: "), (got, err)
    return lines[0].removeprefix("error: ")


def workspace(folder: Path, config: str | None, files: dict[str, str]) -> Path:
    """``folder/ws`` laid out as a job's workspace at its start: its config.toml and files."""
    ws = folder / "ws"
    ws.mkdir(exist_ok=True)
    for name, body in {**files, **({"config.toml": config} if config is not None else {})}.items():
        (ws / name).write_text(body, encoding="utf-8")
    return ws


def job_line(folder: Path, command: str, config: str | None, files: dict[str, str], args: list[str]) -> str:
    """The line ``deepseek COMMAND`` prints (exit code 2) run as the job runs it: its command line
    (:func:`~deepseek_enterprise.service.jobcheck.job_argv`) in a folder holding its config.toml and files."""
    return cli_line(workspace(folder, config, files), job_argv(command, config is not None, args))
