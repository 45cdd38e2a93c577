"""Shared by every test session: under pytest-xdist (two workers on the 2-core CI machine) each
worker computes on one intra-op thread, so the two do not oversubscribe the cores. Subprocesses
the tests start keep their own defaults (the CLI's thread rules are what those tests check).

It also holds the ``one_thread`` fixture the in-process tests of tiny models ask for, and registers
the contract suites' ``--contract-data`` option (options are read before
``tests/contract/conftest.py`` loads when the whole ``tests`` folder runs); the suites read it
there (docs/plugins.md section 9)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--contract-data", metavar="JSON|FILE", default=None,
        help="tests/contract: [data] keys the contract suites make your datasets with, a JSON object of dataset "
             "name -> keys or the path of a JSON file holding one, e.g. '{\"acme.rows\": {\"train_rows\": 40}}' "
             "(default: $DEEPSEEK_CONTRACT_DATA)")


def pytest_configure(config: object) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test, the previous count restored after it. Tests of tiny models
    ask for it (``pytestmark = pytest.mark.usefixtures("one_thread")``: core's decoding tests, the
    enterprise in-process multimodal tests): one thread is as fast, and far faster when other jobs
    share the cores. (tests/core/cli overrides it with a session-wide one: its trained run, made
    once for the session, asks for it.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
