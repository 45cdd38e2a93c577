"""A model whose loss is a mean over tokens of padded rows declares ``loss_items`` and is weighed
by items: ``train.grad_accum`` then gives the whole batch's loss per token (the same first-step
loss and update as without accumulation), and evaluation averages the validation set per token.
Without ``loss_items`` micro-batches weigh by rows (the helper-70 reproduction: 2.7096 against
2.2606 for the same batch and weights)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepseek
from deepseek import hookimpl
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.loss_items import ItemWeights
from deepseek.training.single import SingleDeviceStrategy

VOCAB, LENGTH = 32, 30


class Unweighed(TrainableModel):
    """An embedding LM; ``targets`` is -100 past each row's length. Weighed by rows."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.head = nn.Linear(16, VOCAB)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.embed(input_ids))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


class PaddedLM(Unweighed):
    """The same model weighed by the tokens its loss counts."""

    def loss_items(self, batch: Any) -> int | None:
        return int((batch["targets"] != -100).sum())


def rows(n: int, seed: int) -> torch.utils.data.TensorDataset:
    """Rows of 30 or 2 tokens, alternating in fours (as helper-70's)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
    targets = torch.randint(0, VOCAB, (n, LENGTH), generator=g)
    for i in range(n):
        if i % 8 >= 4:
            targets[i, 2:] = -100
    return torch.utils.data.TensorDataset(ids, targets)


def fit(tmp_path: Path, name: str, model: Any, accum: int, steps: int = 3) -> Any:
    config = {"train": {"max_steps": steps, "lr": 1e-2, "warmup_steps": 0, "grad_accum": accum, "eval_interval": steps},
              "data": {"eval_batches": 4}, "logging": {"progress": False, "plot": False}}
    return deepseek.fit(model, rows(256, 0), val_data=rows(64, 1), names=("input_ids", "targets"), batch_size=8,
                        shuffle=False, config=config, run_dir=tmp_path / name,
                        host=PluginHost(PluginSettings(autoload=False)))


def test_accumulation_gives_the_whole_batchs_loss_per_token(tmp_path: Path) -> None:
    torch.manual_seed(0)
    whole = fit(tmp_path, "whole", PaddedLM, 1)
    split = fit(tmp_path, "split", PaddedLM, 2)
    four = fit(tmp_path, "four", PaddedLM, 4)
    assert split.losses == pytest.approx(whole.losses, rel=1e-6) and four.losses == pytest.approx(whole.losses, rel=1e-6)
    assert split.val_metrics["val_loss"] == pytest.approx(whole.val_metrics["val_loss"], rel=1e-6)
    # the first step's loss is the token mean of the first batch, with the initial weights
    torch.manual_seed(0)
    model = PaddedLM()
    initial = copy.deepcopy(model)
    given = fit(tmp_path, "instance", model, 2)  # an instance trains with its own weights
    ids, targets = rows(256, 0)[:8]
    with torch.no_grad():
        assert given.losses[0] == pytest.approx(float(initial(ids, targets)), rel=1e-6)
    # weighed by rows instead, the two halves' means are averaged: another objective
    unweighed = fit(tmp_path, "unweighed", Unweighed, 2)
    assert abs(unweighed.losses[0] - whole.losses[0]) > 0.01  # 3.5828 against 3.5576


def test_a_micro_batch_without_items_adds_nothing(tmp_path: Path) -> None:
    """Step 1's second half (rows 4-7) holds no target: with grad_accum 2 (and 4) that micro-batch
    weighs 0 and its loss, a mean over no token (NaN), counts as 0; the run gives the losses of
    grad_accum 1 (it stopped at step 1 with 'the loss is nan')."""
    ids, targets = rows(64, 0).tensors
    targets[4:8] = -100
    data = torch.utils.data.TensorDataset(ids, targets)

    def run(accum: int) -> list[float]:
        config = {"train": {"max_steps": 3, "lr": 1e-2, "warmup_steps": 0, "grad_accum": accum, "eval_interval": 3},
                  "data": {"eval_batches": 1}, "logging": {"progress": False, "plot": False}}
        torch.manual_seed(0)
        return deepseek.fit(PaddedLM, data, val_data=rows(8, 1), names=("input_ids", "targets"), batch_size=8,
                            shuffle=False, config=config, run_dir=tmp_path / str(accum),
                            host=PluginHost(PluginSettings(autoload=False))).losses

    whole = run(1)
    assert len(whole) == 3
    assert run(2) == pytest.approx(whole, rel=1e-6)
    assert run(4) == pytest.approx(whole, rel=1e-6)


def test_evaluation_is_the_mean_per_token_of_the_validation_set(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PaddedLM()
    val = rows(64, 1)
    got = deepseek.evaluate(model, val, names=("input_ids", "targets"), batch_size=8)
    ids, targets = val[:]
    with torch.no_grad():
        assert got["val_loss"] == pytest.approx(float(model(ids, targets)), rel=1e-6)


@pytest.mark.parametrize(("answer", "message"), [
    (-1, r"loss_items returned -1 for the global batch of step 1; it must return the number of items"),
    (1.5, r"loss_items returned 1\.5 for the global batch of step 1"),
    (0, r"the global batch of step 1 holds no item its loss counts \(loss_items is 0\)"),
])
def test_a_bad_count_is_one_line(answer: Any, message: str) -> None:
    weights = ItemWeights(lambda batch: answer, "model acme.lm (deepseek-acme 0.1)")
    with pytest.raises(UsageError, match=rf"^model acme\.lm \(deepseek-acme 0\.1\): {message}"):
        weights.step_weights({"x": torch.zeros(4)}, [{"x": torch.zeros(4)}], 1, 1)


class RowsOnly(SingleDeviceStrategy):
    """``single`` declaring that its step weighs micro-batches by rows (a plugin strategy whose
    own step ignores ``MicroBatches`` weights)."""

    weighs_items = False


class RowsOnlyPlugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.rows", RowsOnly, description="single, weighing micro-batches by rows")


def test_a_strategy_weighing_by_rows_trains_packed_rows_and_refuses_padded_ones(tmp_path: Path) -> None:
    """docs/plugins.md ("Strategies", ``weighs_items = False``): such a strategy trains a model
    weighing by items on batches whose rows all count the same items, with single's very losses
    (weighing by rows is then exact), and refuses a step whose rows do not, in one line."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(RowsOnlyPlugin(), dist="acme-rows").status == "ok"
    ids, targets = rows(64, 0).tensors
    packed = torch.utils.data.TensorDataset(ids, torch.where(targets == -100, ids, targets))

    def run(name: str, data: Any, folder: str) -> list[float]:
        config = {"train": {"max_steps": 3, "lr": 1e-2, "warmup_steps": 0, "grad_accum": 2, "eval_interval": 3},
                  "data": {"eval_batches": 1}, "strategy": {"name": name, "device": "cpu"},
                  "logging": {"progress": False, "plot": False}}
        torch.manual_seed(0)
        return deepseek.fit(PaddedLM, data, val_data=rows(8, 1), names=("input_ids", "targets"), batch_size=8,
                            shuffle=False, config=config, run_dir=tmp_path / folder, host=host).losses

    assert run("acme.rows", packed, "rows") == run("single", packed, "single")
    with pytest.raises(UsageError, match=r"^model 'script': rows of step 1's batch count 30 and 2 items its loss "
                                         r"averages over \(loss_items: padded rows\), which strategy 'acme\.rows' "
                                         r"weighs by rows, not items; pack the rows"):
        run("acme.rows", rows(64, 0), "padded")
