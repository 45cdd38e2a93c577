"""The exit status of a command run in a test's process, as the interpreter gives it: core's tests'
rule (tests/core/_exitcode.py), loaded by its path as pro's tests load it (tests/pro/_prohelpers.py):
tests/core is not on the enterprise tests' ``sys.path``, and putting it there would put core's
conftest.py there too. Imports nothing heavy (no torch): the service tests' helpers, which must
leave a server process without torch, use it too."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "core_tests_exitcode", Path(__file__).resolve().parents[1] / "core" / "_exitcode.py")
assert _spec is not None and _spec.loader is not None
_core = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_core)

exit_status = _core.exit_status
"""``sys.exit(code)``'s exit status: ``None`` is 0, an int is itself, anything else is written to
stderr (the second argument) and is 1."""

__all__ = ["exit_status"]
