"""Models whose blocks DeepSpeed ZeRO-3 gathers whole (``gather_unit = "block"``) where the first
block's input needs no gradient (raw features straight into the blocks, and frozen embeddings
in front of them), and one whose middle block sits out every other step. Each is trained with ``deepseek.fit`` for 4 steps under ``deepspeed`` stage 3
with each gather unit, in one torchrun job (test helper); the test compares with ``single``.

Usage: ``python tests/pro/_leaf_fit.py OUT`` under torchrun. Rank 0 writes ``OUT/<model>-<unit>.json``
(the step losses).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek.models.protocol import TrainableModel


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(torch.tanh(self.a(x)))


class RawBlocks(TrainableModel):
    """Features go straight into the first block."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.head = nn.Linear(8, 3)

    def block_modules(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        x = features
        for block in self.blocks:
            x = block(x)
        return F.cross_entropy(self.head(x), label)


class FrozenFront(RawBlocks):
    """A frozen input layer in front of the blocks (fine-tuning above a fixed feature map)."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Linear(8, 8)
        self.front.requires_grad_(False)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return super().forward(self.front(features), label)


class SkipsBlock(RawBlocks):
    """The middle block runs on every other training forward only (the same on every rank), as a
    modality's encoder does in a batch without that modality."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        x = features
        for i, block in enumerate(self.blocks):
            if i != 1 or not self.training or self.calls % 2:
                x = block(x)
        return F.cross_entropy(self.head(x), label)


MODELS = {"raw": RawBlocks, "frozen": FrozenFront, "skips": SkipsBlock}


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def train(model: str, strategy: dict, run_dir: Path):  # noqa: ANN201 (a TrainResult)
    config = {"train": {"max_steps": 4, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 4},
              "data": {"eval_batches": 1}, "precision": {"dtype": "fp32"}, "strategy": strategy,
              "checkpoint": {"interval": 0}, "logging": {"progress": False, "plot": False}}
    return deepseek.fit(MODELS[model], rows(64, 0), val_data=rows(16, 1), names=("features", "label"), batch_size=8,
                        shuffle=False, config=config, quiet=True, run_dir=run_dir)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    for model in MODELS:
        for unit in ("block", "module"):
            result = train(model, {"name": "deepspeed", "stage": 3, "gather_unit": unit}, out / f"{model}-{unit}")
            if result.is_global_zero:
                (out / f"{model}-{unit}.json").write_text(json.dumps(result.losses))
    sys.stdout.flush()
