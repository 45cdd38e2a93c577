"""Helpers core's tests share with enterprise's (tests/core/_exitcode.py, _tokfile.py,
_negative_momentum.py), loaded by their path: tests/core is not on the enterprise tests'
``sys.path``, and putting it there would put core's conftest.py there too. Imports nothing heavy
(no torch): the service tests' helpers, which must leave a server process without torch, use it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any


def core_test_module(stem: str) -> Any:
    """tests/core/``stem``.py, loaded once by its path and kept in ``sys.modules`` as
    ``core_tests<stem>`` (the name tests/pro/_prohelpers.py gives it too), where dataclasses look
    up its annotations."""
    name = f"core_tests{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "core" / f"{stem}.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]
