"""SIGUSR2 to the launcher dumps its threads' stacks to its stderr (docs/distributed.md, 'Hung
rank'), also where ``sys.stderr`` is a stream without a file descriptor, as click's ``CliRunner``
and a notebook make it: arming the dump there raised ``io.UnsupportedOperation: fileno`` and the
launch failed before it started anything
(test_launch_units.py::test_a_stop_signal_before_the_workers_start_ends_the_job_with_75)."""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import sys
import time

import pytest

from deepseek_pro.launch.runner import _arm_stack_dump


def test_the_dump_goes_to_descriptor_2_when_sys_stderr_has_none(capfd: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no fileno(): io.UnsupportedOperation
    assert _arm_stack_dump()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.2)
    finally:
        faulthandler.unregister(signal.SIGUSR2)
    err = capfd.readouterr().err
    assert "test_the_dump_goes_to_descriptor_2_when_sys_stderr_has_none" in err, err  # this frame, dumped
    assert sys.stderr.getvalue() == ""  # type: ignore[attr-defined]
