"""A ``deepseek`` process that is a rank of a multi-process job (``RANK`` and ``WORLD_SIZE`` set,
as torchrun sets them) leaves with its exit code past the interpreter's shutdown
(``deepseek.cli.exits.leave_rank``), whose C++ destructors could abort and turn exit code 0 or 2
into SIGABRT; its error line is still printed, and a rank that succeeds runs its atexit handlers
first. Elsewhere the ordinary exit runs (atexit handlers, then the shutdown that finalizes
objects, here one whose ``__del__`` prints)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = ("import atexit, sys; atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
          "class Kept:\n    def __del__(self): print('finalized', file=sys.stderr)\n"
          "kept = Kept(); sys.argv[0] = 'deepseek'; from deepseek.cli.main import main; main()")


def _run(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                          env={**env, **env_extra}, timeout=120)


@pytest.mark.parametrize(("env", "exits_now"), [({"RANK": "1", "WORLD_SIZE": "2"}, True), ({}, False)])
def test_a_failed_rank_leaves_at_once_with_its_code(env: dict[str, str], exits_now: bool) -> None:
    out = _run(env, "config", "show", "--set", "model.name=tinny")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("error: model.name: unknown model 'tinny'; did you mean 'tiny'?")
    assert ("atexit ran" in lines) is not exits_now
    assert ("finalized" in lines) is not exits_now


@pytest.mark.parametrize(("env", "exits_now"), [({"RANK": "0", "WORLD_SIZE": "2"}, True), ({}, False)])
def test_a_rank_that_succeeds_runs_its_exit_handlers_then_leaves_at_once(env: dict[str, str], exits_now: bool) -> None:
    out = _run(env, "config", "show", "--set", "model.name=tiny")
    assert out.returncode == 0, out.stderr
    assert 'name = "tiny"' in out.stdout and "atexit ran" in out.stderr.splitlines()
    assert ("finalized" in out.stderr.splitlines()) is not exits_now
