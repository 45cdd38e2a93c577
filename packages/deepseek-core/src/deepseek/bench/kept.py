"""Process-wide torch settings that ``bench latency`` changes while it measures (the intra-op
thread count of ``--threads``, the seed of its weights and inputs), put back after it, however it
ended: an in-process caller (``deepseek.cli.main.main``, a notebook, a test) keeps its own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def kept_threads_and_rng(device: str) -> Iterator[None]:
    """The thread count and the random state of the CPU (and of ``device`` when it is a CUDA
    device; other CUDA devices are not touched, so that no context is made on them) as they were."""
    import torch

    threads = torch.get_num_threads()
    place = torch.device(device)
    cuda = [place.index if place.index is not None else torch.cuda.current_device()] \
        if place.type == "cuda" and torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        torch.set_num_threads(threads)
