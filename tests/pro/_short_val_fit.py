"""A tiny GPT trained with ``deepseek.fit`` on token rows whose validation set ends in a shorter
batch, under several strategies in one torchrun job (test helper).

Usage: ``python tests/pro/_short_val_fit.py OUT NAME [NAME ...]`` under torchrun or alone.
``NAME`` is ``STRATEGY[-dp2][+ROWS]``: ``-dp2`` gives ``hybrid`` one pipeline stage and two
data-parallel ranks; ``ROWS`` the validation rows (default 21: batches of 8, 8 and 5). Rank 0
writes ``OUT/NAME.json``: the run's final ``val_*`` values and its losses.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from _probe import run_cases
from _probe import token_rows as tokens

import deepseek

VAL_ROWS = 21


def model() -> torch.nn.Module:
    return deepseek.create_model("tiny", d_model=32, n_heads=2, n_layers=2, max_seq_len=16)


def run(out: Path, name: str) -> None:
    case, _, rows = name.partition("+")
    strategy, _, layout = case.partition("-")
    options = {"pp_size": 1} if layout == "dp2" else {}
    config = {"train": {"max_steps": 2, "lr": 1e-3, "warmup_steps": 0, "eval_interval": 2},
              "data": {"eval_batches": 6}, "precision": {"dtype": "fp32"},
              "strategy": {"name": strategy, **options}, "logging": {"progress": False, "plot": False}}
    result = deepseek.fit(model, tokens(64, 0), val_data=tokens(int(rows or VAL_ROWS), 1),
                          names=("input_ids", "targets"), batch_size=8, shuffle=False, config=config, quiet=True,
                          run_dir=out / name)
    if result.is_global_zero:
        (out / f"{name}.json").write_text(json.dumps({"val": result.val_metrics, "losses": result.losses}))


if __name__ == "__main__":
    run_cases(run)
