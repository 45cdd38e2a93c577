"""Shared by core's test folders: :func:`deepseek_here`, a ``deepseek`` command run in this
process."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from _exitcode import exit_status


@pytest.fixture(scope="session")
def deepseek_here() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``deepseek_here(*ARGS, cwd=FOLDER)``: ``deepseek ARGS`` run in this process from FOLDER on
    core's built-ins, with no ``DEEPSEEK_*`` variable of the test's environment (as the tests'
    subprocesses are started), ``sys.argv``, ``sys.path`` and torch's intra-op threads (the commands
    set them: deepseek.devices.use_default_cpu_threads) restored after it; its exit code (a
    ``SystemExit`` read as the interpreter reads it: :func:`_exitcode.exit_status`),
    stdout and stderr as ``subprocess.run(..., capture_output=True, text=True)`` gives them. For
    tests of what a command prints and writes, not of its process: a process start costs seconds
    on the shared CI cores."""
    import torch

    from deepseek.cli.main import main
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    core_host = PluginHost(PluginSettings(autoload=False))

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        threads = torch.get_num_threads()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            patch.chdir(cwd)
            for key in [k for k in os.environ if k.startswith("DEEPSEEK_")]:
                patch.delenv(key)
            patch.setattr(sys, "argv", list(sys.argv))
            patch.setattr(sys, "path", list(sys.path))
            try:
                main(list(args), host=core_host)
            except SystemExit as exc:
                code = exit_status(exc.code, err)
            finally:
                torch.set_num_threads(threads)
        return subprocess.CompletedProcess(["deepseek", *args], code, out.getvalue(), err.getvalue())

    return run
