"""What the "Hugging Face user" tests share: their small text corpus, the JSON lines they write
and the tiny model's ``deepseek train`` options (the ``host`` fixture is conftest.py's)."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["the", "cat", "sat", "on", "mat", "while", "a", "dog", "ran", "in", "park", "héllo"]
SMALL = ["--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2",
         "--set", "model.n_layers=1", "--set", "model.max_seq_len=32", "--set", "data.name=hf",
         "--set", "data.seq_len=16", "--set", "data.batch_size=4", "--set", "data.eval_batches=1",
         "--set", "data.shuffle_buffer=8", "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"",
         "--set", "train.warmup_steps=1", "--precision", "fp32", "--quiet"]
"""``deepseek train`` options of a one-layer tiny GPT on the ``hf`` dataset, on the CPU."""


def texts(n: int, seed: int) -> list[str]:
    """``n`` random short sentences of :data:`WORDS` (one non-ASCII word), reproducible by ``seed``."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) for _ in range(n)]


def jsonl(path: Path, rows: list[str], column: str = "text") -> Path:
    """``rows`` written to ``path`` as JSON lines ``{"id": i, column: text}``."""
    path.write_text("".join(json.dumps({"id": i, column: t}) + "\n" for i, t in enumerate(rows)), encoding="utf-8")
    return path
