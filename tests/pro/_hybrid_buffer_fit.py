"""A tiny GPT whose blocks keep a persistent running mean of their outputs (updated by each
training forward from the rows it sees, added back to the output), trained with ``deepseek.fit``
under ``hybrid`` with one stage and two data-parallel replicas: to step 6 with checkpoints at 3 and
6 and an evaluation at 6, then resumed from step 3 to step 6 (test helper).

Usage: ``python tests/pro/_hybrid_buffer_fit.py OUT hybrid`` under torchrun (2 processes). Rank 0 writes
``OUT/hybrid.json`` (both runs' losses, the last ``val_loss``); every rank writes
``OUT/buffers-<rank>.pt``, its stage's running means at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from _probe import run_cases
from _probe import token_rows as tokens
from torch import nn

import deepseek

D_MODEL = 32
SEEN: dict[int, torch.Tensor] = {}
"""Each block's running mean as its last forward read it (the final evaluation's, after the sync)."""


def _running(block: nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
    if block.training:
        with torch.no_grad():
            block.running.mul_(0.5).add_(out.detach().float().mean((0, 1)), alpha=0.5)
    SEEN[id(block)] = block.running.detach().cpu().clone()
    return out + 0.1 * block.running


def model() -> nn.Module:
    gpt = deepseek.create_model("tiny", d_model=D_MODEL, n_heads=2, n_layers=2, max_seq_len=16)
    for block in gpt.block_modules():
        block.register_buffer("running", torch.zeros(D_MODEL))
        block.register_forward_hook(_running)
    return gpt


def main(out: Path) -> None:
    config = {"train": {"max_steps": 6, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 6},
              "data": {"eval_batches": 2}, "precision": {"dtype": "fp32"},
              "checkpoint": {"interval": 3, "keep_last": 5},
              "strategy": {"name": "hybrid", "pp_size": 1}, "logging": {"progress": False, "plot": False}}
    common = {"val_data": tokens(16, 1), "names": ("input_ids", "targets"), "batch_size": 8, "shuffle": False,
              "config": config, "quiet": True}
    whole = deepseek.fit(model, tokens(64, 0), run_dir=out / "hybrid", **common)
    torch.save(list(SEEN.values()), out / f"buffers-{os.environ['RANK']}.pt")  # the group is gone: fit tore it down
    resumed = deepseek.fit(model, tokens(64, 0), run_dir=out / "hybrid-resumed",
                           resume=out / "hybrid" / "checkpoints" / "step-3", **common)
    if whole.is_global_zero:
        (out / "hybrid.json").write_text(json.dumps({"losses": whole.losses, "resumed": resumed.losses,
                                                     "val_loss": whole.val_metrics["val_loss"]}))


if __name__ == "__main__":
    run_cases(lambda out, _name: main(out))
