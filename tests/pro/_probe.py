"""What the ``deepseek.fit`` probes of tests/pro share (test helper): token rows to train a tiny
GPT on, and the way a probe script runs its cases under torchrun and leaves."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def token_rows(n: int, seed: int, vocab: int = 256, seq: int = 16) -> torch.utils.data.TensorDataset:
    """``n`` rows of ``seq`` random token ids below ``vocab`` and their next tokens (``input_ids``, ``targets``)."""
    ids = torch.randint(0, vocab, (n, seq + 1), generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.TensorDataset(ids[:, :-1].contiguous(), ids[:, 1:].contiguous())


def run_cases(run: Callable[[Path, str], None]) -> None:
    """``run(OUT, NAME)`` for ``python PROBE OUT NAME [NAME ...]`` on one thread, then leave past
    DeepSpeed's and gloo's threads, as _train_jobs.py does (a process ending with them alive can
    abort in them, turning a finished probe into a failed torchrun)."""
    torch.set_num_threads(1)
    for name in sys.argv[2:]:
        run(Path(sys.argv[1]), name)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
