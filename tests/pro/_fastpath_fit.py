"""A classifier over an ``nn.TransformerEncoderLayer`` trained and validated with ``deepseek.fit``
under ``single`` and under DeepSpeed ZeRO-2 (test helper, run under torchrun by
``test_deepspeed_fused_kernels.py``).

DeepSpeed holds the weights as views of flat buffers at any element offset (an odd-sized first
layer shifts every later one), and torch's fused inference kernel of the encoder layer
(``torch._transformer_encoder_layer_fwd``, taken in eval mode without grad) fails on CUDA on
such weights. The probe counts that kernel's calls during each run and records torch's switch for
it after the run. Rank 0 writes ``OUT/<strategy>.json``: ``{"fused_calls", "fastpath_after"}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from _probe import run_cases
from torch import nn

import deepseek
from deepseek.models.protocol import TrainableModel

CALLS = {"n": 0}
_fused = torch._transformer_encoder_layer_fwd


def counted(*args, **kwargs):
    CALLS["n"] += 1
    return _fused(*args, **kwargs)


torch._transformer_encoder_layer_fwd = counted


class EncoderClassifier(TrainableModel):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(5, 17)  # 102 weights: the encoder's start at an odd offset in a flat buffer
        self.up = nn.Linear(17, 16)
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        x = self.layer(self.up(self.inp(features)))
        return F.cross_entropy(self.head(x.mean(1)), label)


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 4, 5, generator=g), torch.randint(0, 3, (n,), generator=g))


def run(out: Path, strategy: str) -> None:
    config = {"train": {"max_steps": 2, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 2},
              "data": {"eval_batches": 2}, "precision": {"dtype": "bf16" if strategy == "deepspeed" else "fp32"},
              "strategy": {"name": strategy, **({"stage": 2} if strategy == "deepspeed" else {})},
              "checkpoint": {"interval": 0}, "logging": {"progress": False, "plot": False}}
    CALLS["n"] = 0
    result = deepseek.fit(EncoderClassifier, rows(32, 0), val_data=rows(16, 1), names=("features", "label"), batch_size=8,
                          shuffle=False, config=config, run_dir=out / strategy, quiet=True)
    if result.is_global_zero:
        (out / f"{strategy}.json").write_text(json.dumps({"fused_calls": CALLS["n"],
                                                          "fastpath_after": torch.backends.mha.get_fastpath_enabled()}))


if __name__ == "__main__":
    run_cases(run)
