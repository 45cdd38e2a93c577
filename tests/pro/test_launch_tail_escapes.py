"""``deepseek launch``'s report of a failed rank quotes what the rank wrote: its ``error:`` line
and its log's last lines were printed raw, so an ESC sequence a worker logged recoloured or
cleared the terminal and a carriage return overwrote the line. Each goes through the project's
rule for characters that do not print (``deepseek.errors.one_line``)."""

from __future__ import annotations

import pytest

from deepseek_pro.launch.cli import echo_result
from deepseek_pro.launch.runner import LaunchResult


def test_a_failed_ranks_tail_and_line_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    result = LaunchResult(1, "rank 1 (pid 7) exited with code 1: boom\x1b[2J", "logs/1/stderr.log",
                          ["Traceback", "\x1b[31mValueError: bad\x1b[0m", "progress 10%\rprogress 99%\x07"])
    echo_result(result)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "\x07" not in err
    assert err.splitlines() == [  # the rank's line last, after its log's
        "last lines of logs/1/stderr.log:",
        "  | Traceback",
        "  | \\x1b[31mValueError: bad\\x1b[0m",
        "  | progress 10%\\rprogress 99%\\x07",
        "error: rank 1 (pid 7) exited with code 1: boom\\x1b[2J",
    ]


def test_a_stop_line_from_a_rank_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    from deepseek.training.preemption import EXIT_PREEMPTED

    echo_result(LaunchResult(EXIT_PREEMPTED, "stopped: saved at step 3 in runs/a\x1b]0;x\x07"))
    assert capsys.readouterr().err == "stopped: saved at step 3 in runs/a\\x1b]0;x\\x07\n"
