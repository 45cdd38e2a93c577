"""Fixtures of the CLI tests: core's plugin host, one trained run for the whole session, and a
:class:`hostile_cli.Hostile` runner in a fresh working folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_cli import TINY, Hostile, invoke

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@pytest.fixture(scope="session")
def core_host() -> PluginHost:
    """Core's built-ins only, whatever else is installed."""
    return PluginHost(PluginSettings(autoload=False))


@pytest.fixture(scope="session")
def one_thread() -> Iterator[None]:
    """Very small models: one intra-op thread is as fast, and much faster on shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, core_host: PluginHost, one_thread: None) -> Path:
    """A one-step run of a very small GPT (its checkpoint at step 1), shared by every test that
    reads a run; tests that damage it work on a copy."""
    run = tmp_path_factory.mktemp("trained") / "run"
    outcome = invoke(["train", *TINY, "--run-dir", str(run)], core_host)
    assert outcome.code == 0, outcome.stderr
    return run


@pytest.fixture
def hostile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, core_host: PluginHost, trained_run: Path
) -> Hostile:
    """A runner in the empty working folder ``tmp_path/work`` that watches it and the trained run."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DEEPSEEK_CACHE_DIR", str(tmp_path / "cache"))
    return Hostile(core_host, work, [trained_run])
