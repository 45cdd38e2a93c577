"""What the BPE tokenizer tests share: the word corpus ``deepseek tokenizer train`` learns from
(its held-out files carry a word no training file has) and the tiny model's ``deepseek train``
options (the ``host`` fixture is conftest.py's)."""

from __future__ import annotations

import random
from pathlib import Path

from deepseek.data.corpus import path_corpus

WORDS = ["alpha", "beta", "gamma", "delta", "the", "quick", "brown", "fox", "def", "return", "self", "x = 1"]
UNSEEN = "zqxjv"
"""A word written only into the validation file: the tokenizer must never learn it."""
SMALL = ["--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2",
         "--set", "model.n_layers=1", "--set", "model.max_seq_len=32", "--set", "data.seq_len=16",
         "--set", "data.batch_size=4", "--set", "data.eval_batches=2", "--set", "data.shuffle_buffer=8",
         "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"", "--set", "train.warmup_steps=1",
         "--set", "checkpoint.interval=2", "--precision", "fp32", "--quiet"]
"""``deepseek train`` options of a one-layer tiny GPT on the ``text`` dataset, on the CPU."""


def write_corpus(folder: Path) -> Path:
    """20 files of words; the files the split holds out get a word no training file has."""
    rng = random.Random(0)
    folder.mkdir()
    for i in range(20):
        (folder / f"doc{i:02d}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(600)) + "\n")
    val = path_corpus(folder, val_fraction=0.05).pieces("val")
    assert 0 < len(val) < 20
    for piece in val:
        Path(piece.path).write_text(" ".join([UNSEEN] * 300 + [rng.choice(WORDS) for _ in range(300)]) + "\n")
    return folder
