"""Config tests run with core only, and leave the shared plugin host as they found it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _core_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from deepseek.plugins import host as host_mod

    for key in [k for k in os.environ if k.startswith("DEEPSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD", "1")
    saved = (host_mod._HOST, host_mod._SETTINGS, host_mod._CONFIG_PREFER)
    host_mod.configure(None)
    yield
    host_mod._HOST, host_mod._SETTINGS, host_mod._CONFIG_PREFER = saved
