"""Gaussian blobs: class ``c`` is centred on a fixed random point; batches are drawn from
``(seed, batch index)``, so the position is the index and resuming replays the same batches."""

from dataclasses import dataclass

import torch

from deepseek.data.dataset import Dataset


@dataclass(frozen=True)
class BlobOptions:
    """``[data]`` keys: the blobs' dimension and count, their spread, the validation size."""

    features: int = 16
    classes: int = 4
    noise: float = 1.5
    val_batches: int = 4


class Blobs(Dataset):
    Options = BlobOptions

    def __init__(self, options: BlobOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        g = torch.Generator().manual_seed(12345)  # the task does not depend on the run's seed
        self.centers = torch.randn(options.classes, options.features, generator=g) * 2
        self.index = 0

    def _batch(self, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        label = torch.randint(0, self.options.classes, (self.batch_size,), generator=g)
        noise = torch.randn(self.batch_size, self.options.features, generator=g) * self.options.noise
        return {"features": self.centers[label] + noise, "label": label}

    def __next__(self) -> dict[str, torch.Tensor]:
        self.index += 1
        return self._batch(self.seed * 1_000_003 + self.index)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(10**9 + i) for i in range(min(limit, self.options.val_batches))]

    def state_dict(self) -> dict:
        return {"index": self.index, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed") != self.seed:
            from deepseek.errors import UsageError

            raise UsageError(f"data position: saved with seed {state.get('seed')}, this run has {self.seed}")
        self.index = int(state["index"])

    @classmethod
    def model_num_classes(cls, options: BlobOptions) -> int:
        return options.classes  # labels 0 .. classes - 1 (the contract tests check it on the first batches)
