"""Fixtures of the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test, the previous count restored after it. The decoding tests
    ask for it (``pytestmark = pytest.mark.usefixtures("one_thread")``): their models are tiny,
    and one thread is as fast and far faster when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
