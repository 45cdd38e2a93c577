"""A residual MLP classifier following deepseek's model contract."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from deepseek.models.protocol import TrainableModel


@dataclass(frozen=True)
class MLPOptions:
    features: int = 16  # input width, as the dataset's
    hidden: int = 32
    classes: int = 4
    depth: int = 2  # hidden layers, each an FSDP unit
    dropout: float = 0.0


def hidden_layer(width: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Dropout(dropout))


class BlobClassifier(TrainableModel):
    Options = MLPOptions

    def __init__(self, options: MLPOptions) -> None:
        super().__init__()
        self.inp = nn.Linear(options.features, options.hidden)
        self.blocks = nn.ModuleList(hidden_layer(options.hidden, options.dropout) for _ in range(options.depth))
        self.head = nn.Linear(options.hidden, options.classes)
        self.checkpointing = False

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.inp(features)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpointing else block(x)
        logits = self.head(x).float()
        return {"loss": F.cross_entropy(logits, label), "accuracy": (logits.argmax(-1) == label).float().mean()}

    def metric_names(self):
        return ("accuracy",)  # what forward reports beside the loss: train.monitor = "val_accuracy" is checked

    def block_modules(self):
        return list(self.blocks)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.checkpointing = bool(enabled)
