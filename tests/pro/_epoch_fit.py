"""A tiny GPT trained with ``deepseek.fit`` for ``max_epochs=2`` on 44 token rows in batches of
8 under each named strategy in one torchrun job, a callback recording its
``deepseek_train_epoch_end`` calls (test helper).

Usage: ``python tests/pro/_epoch_fit.py OUT STRATEGY [STRATEGY ...]`` under torchrun or alone.
Every rank writes ``OUT/STRATEGY-rank<R>.json``: ``[[epoch, step, trainer.epochs_done], ...]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from _probe import run_cases
from _probe import token_rows as tokens

import deepseek
from deepseek.plugins.host import PluginHost


class EpochRecorder:
    def __init__(self) -> None:
        self.calls: list[list[int | None]] = []

    @deepseek.hookimpl
    def deepseek_train_epoch_end(self, trainer, epoch, step):  # noqa: ANN001, ANN201
        self.calls.append([epoch, step, trainer.epochs_done])


def model() -> torch.nn.Module:
    return deepseek.create_model("tiny", d_model=32, n_heads=2, n_layers=2, max_seq_len=16)


def run(out: Path, strategy: str) -> None:
    recorder, host = EpochRecorder(), PluginHost()
    host.register_plugin(recorder, dist="epoch-recorder")
    config = {"train": {"lr": 1e-3, "warmup_steps": 0}, "precision": {"dtype": "fp32"},
              "strategy": {"name": strategy}, "logging": {"progress": False, "plot": False}}
    deepseek.fit(model, tokens(44, 0), val_data=tokens(8, 1), names=("input_ids", "targets"), batch_size=8,
                 max_epochs=2, config=config, quiet=True, run_dir=out / strategy, host=host)
    rank = os.environ.get("RANK", "0")
    (out / f"{strategy}-rank{rank}.json").write_text(json.dumps(recorder.calls))


if __name__ == "__main__":
    run_cases(run)
