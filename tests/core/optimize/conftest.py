"""Fixtures of the graph-optimizer tests: a private decision cache, and graph helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own DEEPSEEK_CACHE_DIR, so nothing leaks into ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEEPSEEK_CACHE_DIR", str(cache))
    yield cache
