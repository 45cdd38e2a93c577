"""A model whose loss is a mean over tokens of padded rows (``loss_items`` declared), trained with
``deepseek.fit`` under several strategies, one after another, in one torchrun job, each run
making and destroying its own process group (test helper).

Usage: ``python tests/pro/_padded_fit.py OUT NAME [NAME ...]`` (under torchrun, or without it
for ``single``; NAME a strategy, or ``<strategy>+empty`` for data where parts of a step hold no
item, ``<strategy>+gpt`` / ``+gpt-accum2`` for core's GPT on :func:`rows` with ``grad_accum`` 1 / 2,
``<strategy>+gpt-packed`` for it on rows without padding, ``<strategy>+gpt-empty`` for it on
:func:`rows_with_empty_parts`). Each run writes ``OUT/<name>``; rank 0 writes ``OUT/<name>.json``:
the step losses, the steps' gradient norms (before clipping) and the final validation loss, or
``{"error": line}`` for a run refused with a ``UsageError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _probe import run_cases
from torch import nn

import deepseek
from deepseek.errors import UsageError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.protocol import TrainableModel

VOCAB, LENGTH = 32, 30


class PaddedLM(TrainableModel):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.head = nn.Linear(16, VOCAB)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.embed(input_ids))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    def loss_items(self, batch: Any) -> int:
        return int((batch["targets"] != -100).sum())


def tiny_gpt() -> GPT:
    """Core's GPT, small enough for CPU processes (2 blocks: a pipeline stage each)."""
    return GPT(GPTConfig(vocab_size=VOCAB, d_model=16, n_heads=2, n_layers=2, max_seq_len=LENGTH))


def packed(data: torch.utils.data.TensorDataset) -> torch.utils.data.TensorDataset:
    """``data`` with every target counted (random targets where it had -100)."""
    ids, targets = (t.clone() for t in data.tensors)
    targets[targets == -100] = ids[targets == -100]
    return torch.utils.data.TensorDataset(ids, targets)


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    """Rows of 30 or 2 tokens: rank 0's and rank 1's shards (rows 0::2 and 1::2) and the
    micro-batches hold different numbers of tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
    targets = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
    for i in range(n):
        if i % 4 == 0:  # every short row in rank 0's shard, two in one of its micro-batches
            targets[i, 2:] = -100
    return torch.utils.data.TensorDataset(ids, targets)


def rows_with_empty_parts(n: int, seed: int) -> torch.utils.data.TensorDataset:
    """:func:`rows` where parts of a step hold no item (batches of 12 rows, ``grad_accum`` 2, 2
    ranks taking rows 0::2 and 1::2): step 1's first micro-batch (rows 0-5: one process's first
    micro-batch and each rank's) and, in step 2 (rows 12-23), rank 1's whole shard (the odd rows)."""
    ids, targets = rows(n, seed).tensors
    targets[0:6] = -100
    targets[13:24:2] = -100
    return torch.utils.data.TensorDataset(ids, targets)


def val_rows() -> torch.utils.data.TensorDataset:
    """27 validation rows: batches of 12, 12 and 3, the last split 2 and 1 over 2 ranks, the one
    row of the second rank's shard without a target (its mean over no item is NaN, and it weighs
    0: the validation loss was NaN under every data-parallel strategy)."""
    ids, targets = rows(27, 1).tensors
    targets[25] = -100
    return torch.utils.data.TensorDataset(ids, targets)


def run(out: Path, name: str, accum: int = 2) -> None:
    """``name``: a strategy, trained on :func:`rows`, or ``<strategy>+empty``, on
    :func:`rows_with_empty_parts`."""
    strategy, _, variant = name.partition("+")
    train_rows = rows_with_empty_parts(128, 0) if variant in ("empty", "gpt-empty") else rows(128, 0)
    val, model = val_rows(), PaddedLM
    if variant.startswith("gpt"):
        model, accum = tiny_gpt, 2 if variant == "gpt-accum2" else 1
        if variant == "gpt-packed":
            train_rows, val = packed(train_rows), packed(val)
    options = {"stage": 2} if strategy == "deepspeed" else {}
    config = {"train": {"max_steps": 4, "lr": 1e-2, "warmup_steps": 0, "grad_accum": accum, "eval_interval": 4},
              "data": {"eval_batches": 4}, "precision": {"dtype": "fp32"},
              "strategy": {"name": strategy, **options, **({"device": "cpu"} if strategy == "single" else {})},
              "logging": {"progress": False, "plot": False}}
    try:
        result = deepseek.fit(model, train_rows, val_data=val, names=("input_ids", "targets"),
                              batch_size=12, shuffle=False, config=config, run_dir=out / name, quiet=True)
    except UsageError as e:
        if int(__import__("os").environ.get("RANK", "0")) == 0:
            (out / f"{name}.json").write_text(json.dumps({"error": str(e)}))
        return
    if result.is_global_zero:
        records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        norms = [r["grad_norm"] for r in records if "grad_norm" in r]
        (out / f"{name}.json").write_text(json.dumps({"losses": result.losses, "grad_norms": norms,
                                                          "val_loss": result.val_metrics["val_loss"]}))


if __name__ == "__main__":
    # No process group made here: each run makes its own and destroys it, one after another in
    # this process under torchrun's store (a second one used to hang in its rendezvous).
    run_cases(run)
