"""The exit status of a command run in a test's process, as the interpreter gives it: core's tests'
rule (tests/core/_exitcode.py), loaded by its path as pro's tests load it (tests/pro/_prohelpers.py;
here through _core_tests.py). Imports nothing heavy (no torch): the service tests' helpers, which
must leave a server process without torch, use it too."""

from __future__ import annotations

from _core_tests import core_test_module

exit_status = core_test_module("_exitcode").exit_status
"""``sys.exit(code)``'s exit status: ``None`` is 0, an int is itself, anything else is written to
stderr (the second argument) and is 1."""

__all__ = ["exit_status"]
