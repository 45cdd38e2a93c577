"""The exit status of a ``deepseek`` command run in a test's process, as the interpreter gives it.
Core's ``deepseek_here`` (conftest.py) reads a ``SystemExit`` with it, and so does pro's
(tests/pro/_prohelpers.py loads this file by its path: core's tests import nothing of the other
editions'), and so do the enterprise tests' helpers (tests/enterprise/_exitstatus.py loads it the
same way, through _core_tests.py). Imports nothing heavy: the service tests' helpers must leave a
server process without torch."""

from __future__ import annotations

from typing import TextIO


def exit_status(code: object, err: TextIO) -> int:
    """The exit status the interpreter gives ``sys.exit(code)``: ``None`` is 0, an int is itself,
    anything else (``sys.exit("message")``) is written to stderr (``err``) and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    print(code, file=err)
    return 1
