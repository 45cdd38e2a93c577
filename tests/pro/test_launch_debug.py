"""``deepseek --debug launch ...``: the root's ``--debug`` reaches the ranks. A real one-process
job (gloo, CPU, ``ddp``) whose plugin model (test_launch_rank_error.py's ``deepseek-boom``) raises
in its first training ``forward``: with ``--debug`` before ``launch`` the rank prints the traceback
(in its log, and on the console: it is local rank 0) before its error line, as ``deepseek --debug
train`` does; without it, neither shows one. The ranks took ``--debug`` only after the ``--``
(``launch -- --debug train``), or from ``DEEPSEEK_DEBUG=1``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_launch import DEEPSEEK, TINY, launch_env
from test_launch_rank_error import boom_dirs  # noqa: F401 - the fixture

TRAIN = ["train", "--strategy", "ddp", "--max-steps", "1", "--run-dir", "run", *TINY, "--set", "model.name=boom"]


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_the_launchers_debug_reaches_its_ranks(debug: bool, tmp_path: Path, boom_dirs: tuple[Path, Path]) -> None:  # noqa: F811
    root = ["--debug"] if debug else []
    env = launch_env(tmp_path, boom_dirs, tmp_path / "markers", DEEPSEEK_TEST_BOOM="0:1:bug")
    env.pop("DEEPSEEK_DEBUG", None)
    proc = subprocess.run([*DEEPSEEK, *root, "launch", "-n", "1", "--log-dir", "logs", "--", *TRAIN], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert proc.stderr.splitlines()[-1].startswith("error: rank 0 (pid "), proc.stderr[-4000:]
    log = next((tmp_path / "logs").glob("*/attempt_0/0/stderr.log")).read_text()
    said = "RuntimeError: boom on rank 0 at training call 1"
    assert said in log.splitlines()[-1], log[-4000:]  # the rank's error line, last in its log
    traceback = "Traceback (most recent call last):"
    assert (traceback in log, f"[rank0] {traceback}" in proc.stderr) == (debug, debug), log[-4000:]
    if debug:  # the model's own exception, in the traceback
        assert said in log.splitlines()[:-1], log[-4000:]
