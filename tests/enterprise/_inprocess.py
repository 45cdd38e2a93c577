"""``deepseek ARGS`` run in this test's process: the same CLI as ``python -m deepseek`` without a
process start (seconds of imports each), for refused input (refused before any heavy work) and
for short commands whose output a test compares."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest
import torch
from _exitstatus import exit_status

from deepseek.cli.main import main
from deepseek.plugins.host import PluginHost


def deepseek_here(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str,
                  host: PluginHost | None = None) -> tuple[int, str, str]:
    """``deepseek ARGS`` from ``cwd`` on one thread (as the tests' subprocesses run, with
    ``OMP_NUM_THREADS=1``), on ``host`` (default: the process's): exit code, stderr (stripped),
    stdout."""
    monkeypatch.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args), host=host)
    except SystemExit as exc:
        code = exit_status(exc.code, err)
    finally:
        torch.set_num_threads(threads)
    return code, err.getvalue().strip(), out.getvalue()


def deepseek_run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`deepseek_here` for callers without a ``monkeypatch`` (module-scoped fixtures), called
    as ``_compresshelpers.deepseek_cli`` is and shaped as the finished process it stands for:
    ``returncode``, ``stdout``, ``stderr`` (stripped). ``env`` is set in ``os.environ`` for the
    call (the processes it starts inherit it) and restored after."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        code, err, out = deepseek_here(patch, cwd, *args)
    return subprocess.CompletedProcess(["deepseek", *args], code, out, err)
