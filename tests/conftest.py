"""Shared by every test session: under pytest-xdist (two workers on the 2-core CI machine) each
worker computes on one intra-op thread, so the two do not oversubscribe the cores. Subprocesses
the tests start keep their own defaults (the CLI's thread rules are what those tests check)."""

from __future__ import annotations

import os


def pytest_configure(config: object) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
