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
def _clean_plugin_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DEEPSEEK_* variable of the developer's shell leaks in; the shared host is restored."""
    from deepseek.plugins import host as host_mod

    for key in [k for k in os.environ if k.startswith("DEEPSEEK_")]:
        monkeypatch.delenv(key)
    saved = (host_mod._HOST, host_mod._SETTINGS, host_mod._CONFIG_PREFER)
    yield
    host_mod._HOST, host_mod._SETTINGS, host_mod._CONFIG_PREFER = saved
