"""A tiny GPT whose loss comes with a token accuracy (``forward`` and ``pipeline_loss`` return
``{"loss", "accuracy"}``), trained with ``deepseek.fit`` under several strategies (test helper).

Usage: ``python tests/pro/_pipeline_metrics_fit.py OUT NAME [NAME ...]``, under torchrun for
``pipeline`` and ``hybrid-dp2`` (one stage, two data-parallel replicas), alone (or in the test's
process: ``_prohelpers.run_probe_here``) for ``single``.
Rank 0 writes ``OUT/NAME.json``: the final ``val_*`` values and each step's logged accuracy.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from _probe import run_cases, token_rows

import deepseek
from deepseek.models.gpt import GPT, cross_entropy
from deepseek.models.presets import preset_config


class AccuracyGPT(GPT):
    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> Any:
        logits = super().forward(input_ids)
        return logits if targets is None else self.pipeline_loss(logits, targets)

    def metric_names(self) -> tuple[str, ...]:
        return ("accuracy",)

    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> Any:
        return {"loss": cross_entropy(output, target), "accuracy": (output.argmax(-1) == target).float().mean()}


def model() -> torch.nn.Module:
    return AccuracyGPT(dataclasses.replace(preset_config("tiny"), d_model=32, n_heads=2, n_layers=2, max_seq_len=16))


def tokens(n: int, seed: int) -> torch.utils.data.TensorDataset:
    return token_rows(n, seed, vocab=16)  # 16 ids: learnable


def run(out: Path, name: str) -> None:
    strategy, _, layout = name.partition("-")
    options = {"pp_size": 1} if layout == "dp2" else {}
    config = {"train": {"max_steps": 4, "lr": 3e-3, "warmup_steps": 0, "eval_interval": 2},
              "data": {"eval_batches": 3}, "precision": {"dtype": "fp32"},
              "strategy": {"name": strategy, **options}, "logging": {"progress": False, "plot": False}}
    result = deepseek.fit(model, tokens(64, 0), val_data=tokens(20, 1), names=("input_ids", "targets"), batch_size=8,
                          shuffle=False, config=config, quiet=True, run_dir=out / name)
    if result.is_global_zero:
        rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        (out / f"{name}.json").write_text(json.dumps({"val": result.val_metrics, "losses": result.losses,
                                                      "accuracy": [r["accuracy"] for r in rows if "accuracy" in r]}))


if __name__ == "__main__":
    run_cases(run)
