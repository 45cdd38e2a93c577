"""A bigram model (embedding and linear head) as an outside distribution registers one, for the
tests of runs trained with a plugin's model (test_provenance, test_checkpoint_blame)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepseek.models.protocol import TrainableModel


class Bigram(TrainableModel):
    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.head(self.embed(input_ids)).transpose(1, 2), targets)}
