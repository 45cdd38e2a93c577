"""Fixtures of the plugin-host tests (helpers live in plugin_testing.py)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_testing import DistFactory


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DistFactory]:
    """Factory of throwaway plugin distributions visible to this test only."""
    from deepseek.plugins.host import get_host

    get_host()  # the process's host is built before they exist: they reach only the test's own hosts
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    factory = DistFactory(root)
    yield factory
    for module in list(sys.modules):
        if module in factory.modules or module.split(".")[0] in factory.modules:
            del sys.modules[module]
    importlib.invalidate_caches()


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DEEPSEEK_* variable of the developer's shell reaches a host built from the environment."""
    for key in [k for k in os.environ if k.startswith("DEEPSEEK_")]:
        monkeypatch.delenv(key)
