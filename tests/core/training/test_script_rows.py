"""``deepseek.fit`` with data a Lightning user writes: a random augmentation in ``__getitem__``
(read in the main process or by DataLoader workers, and resumed), and a ``collate_fn`` that
returns a Python list with one entry per row (lengths), under gradient accumulation."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import deepseek
from deepseek.data.batch import concat_rows, shard_rows, split_rows
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics

CONFIG = {"train": {"max_steps": 24, "lr": 1e-2, "warmup_steps": 2, "eval_interval": 12},
          "checkpoint": {"interval": 12, "keep_last": 5}, "logging": {"progress": False, "plot": False},
          "data": {"eval_batches": 2}}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


class Jittered(torch.utils.data.Dataset):
    """Points with a random augmentation from torch, Python's random and numpy, as transforms do."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.x[i]
        noise = 0.1 * torch.randn(2) + random.uniform(-0.05, 0.05) + float(np.random.uniform(-0.05, 0.05))
        return {"x": x + noise, "y": (x[0] * x[1] > 0).long()}


class Quadrants(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Dropout(0.1), nn.Tanh(), nn.Linear(32, 2))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.net(x), y)


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = read_metrics(run / "metrics.jsonl")
    return [(r["step"], r["loss"]) for r in rows if "loss" in r] + \
        [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]


def test_a_random_augmentation_is_the_same_with_workers_and_after_a_resume(tmp_path: Path, host: PluginHost) -> None:
    """Workers drew their augmentation from generators seeded when the loader started (1.3e-2 off
    the main process's losses, and a resume 5.8e-3 off): each sample's draws are now seeded by
    (seed, epoch, index) wherever it is read."""
    common = {"batch_size": 16, "config": CONFIG, "host": host}
    plain = deepseek.fit(Quadrants, Jittered(160), run_dir=tmp_path / "plain", **common)
    workers = deepseek.fit(Quadrants, Jittered(160), run_dir=tmp_path / "workers", num_workers=2, **common)
    assert _losses(workers.run_dir) == _losses(plain.run_dir)
    part = {**CONFIG, "train": {**CONFIG["train"], "max_steps": 12, "decay_steps": 24}}
    deepseek.fit(Quadrants, Jittered(160), run_dir=tmp_path / "part", num_workers=2,
                 **{**common, "config": part})
    state = (None, random.getstate(), np.random.get_state()[1].tolist())
    resumed = deepseek.fit(Quadrants, Jittered(160), resume=tmp_path / "part", num_workers=2, **common)
    assert _losses(resumed.run_dir) == _losses(plain.run_dir)
    # reading data leaves Python's and numpy's generators alone (torch's is the run's, seeded by train.seed)
    assert random.getstate() == state[1] and np.random.get_state()[1].tolist() == state[2]


def _lengths_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows padded to 6 with their lengths as a Python list (what a text collate returns)."""
    lengths = [int(s["n"]) for s in samples]
    x = torch.zeros(len(samples), 6)
    for row, s in enumerate(samples):
        x[row, : lengths[row]] = s["x"][: lengths[row]]
    return {"x": x, "lengths": lengths, "y": torch.stack([s["y"] for s in samples])}


class Ragged(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(1)
        self.x, self.n = torch.randn(n, 6, generator=g), torch.randint(1, 7, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "n": self.n[i], "y": (self.x[i, 0] > 0).long()}


class MeanOfLength(nn.Module):
    """Uses each row's own length: a row paired with another row's length gives another loss."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor, lengths: list[int], y: torch.Tensor) -> torch.Tensor:
        assert len(lengths) == len(x), (len(lengths), len(x))
        means = torch.stack([row[:n].mean() for row, n in zip(x, lengths, strict=True)])
        return nn.functional.cross_entropy(self.head(means[:, None]), y)


def test_a_python_list_of_row_values_goes_with_its_rows(tmp_path: Path, host: PluginHost) -> None:
    """The lengths list was passed whole to every micro-batch (each row zipped with the wrong
    length, no error): the losses under grad_accum = 2 are now those of one batch."""
    common = {"batch_size": 16, "host": host, "collate_fn": _lengths_collate, "shuffle": False}
    one = deepseek.fit(MeanOfLength, Ragged(320), run_dir=tmp_path / "one", config=CONFIG, **common)
    two = deepseek.fit(MeanOfLength, Ragged(320), run_dir=tmp_path / "two",
                       config={**CONFIG, "train": {**CONFIG["train"], "grad_accum": 2}}, **common)
    assert [loss for _, loss in _losses(two.run_dir)] == pytest.approx([loss for _, loss in _losses(one.run_dir)],
                                                                       rel=1e-6)


def test_row_lists_are_sharded_split_and_joined_with_the_rows() -> None:
    batch = {"x": torch.arange(8).view(4, 2), "lengths": [5, 3, 7, 2], "ids": ("a", "b", "c", "d"),
             "tag": "t", "classes": ["cat", "dog"], "nested": {"k": [1, 2, 3, 4]}}
    shard = shard_rows(batch, 1, 2)
    assert shard["lengths"] == [3, 2] and shard["ids"] == ("b", "d") and shard["nested"] == {"k": [2, 4]}
    assert shard["tag"] == "t" and shard["classes"] == ["cat", "dog"]  # not one per row: carried
    first, second = split_rows(batch, 2)
    assert (first["lengths"], second["lengths"]) == ([5, 3], [7, 2])
    joined = concat_rows([first, second])
    assert joined["lengths"] == [5, 3, 7, 2] and joined["ids"] == ("a", "b", "c", "d")
    assert torch.equal(joined["x"], batch["x"])


def test_a_dataset_that_draws_nothing_is_read_without_seeding_after_a_probe() -> None:
    """Seeding and putting the generators back cost ~0.1 ms a sample (ten times a tensor
    dataset's read): after the probe, a dataset that drew nothing is read plainly."""
    from deepseek.data.torch_reads import SeededReads

    plain = SeededReads(torch.utils.data.TensorDataset(torch.arange(40.0)), seed=0)
    for i in range(SeededReads.PROBE):
        assert plain.draws
        plain[0, i]
    assert not plain.draws
    jittered = SeededReads(Jittered(40), seed=0)
    for i in range(40):
        jittered[0, i]
    assert jittered.draws  # still seeded: the same sample, the same draws
    assert torch.equal(jittered[1, 3]["x"], jittered[1, 3]["x"]) and not torch.equal(jittered[1, 3]["x"],
                                                                                      jittered[2, 3]["x"])
