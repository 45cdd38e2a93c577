"""A model metric that a micro-batch did not measure (NaN: a class or modality none of its rows has)
weighs nothing in the step's value: the step reports the row-weighted mean over the micro-batches
that measured it, and leaves the metric out of its record where none did (it was 0.0 averaged in,
or NaN in the record). A metric every micro-batch measured is combined exactly as before."""

from __future__ import annotations

import math

import torch
from torch import nn

from deepseek.training.mixed_precision import Precision
from deepseek.training.single import SingleDeviceStrategy, SingleOptions
from deepseek.training.step import MetricSums, StepResult
from deepseek.training.step_records import StepWindow
from deepseek.training.strategy import StepSettings


class Hits(nn.Module):
    """Loss: a mean over rows; ``hit_rate``: the share of ``hit`` among the rows ``scored``, NaN
    (0 / 0) where no row is."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, hit: torch.Tensor, scored: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": (self.w * x).mean(), "hit_rate": (hit & scored).float().sum() / scored.float().sum()}


def _strategy() -> SingleDeviceStrategy:
    strategy = SingleDeviceStrategy(SingleOptions(device="cpu"), precision=Precision("fp32"))
    strategy.setup_environment()
    strategy.place_for_training(Hits(), lambda params: torch.optim.SGD([p for _, p in params], lr=0.0), StepSettings())
    return strategy


def _micro(rows: int, hits: int, scored: int) -> dict[str, torch.Tensor]:
    return {"x": torch.arange(rows, dtype=torch.float32), "hit": torch.arange(rows) < hits,
            "scored": torch.arange(rows) < scored}


def test_a_micro_batch_that_measured_nothing_weighs_nothing() -> None:
    strategy = _strategy()
    # 6 rows scoring 3 of 6, then 2 rows scoring none: the step's rate is the first's, 0.5
    _, metrics = strategy.forward_backward([_micro(6, 3, 6), _micro(2, 0, 0)])
    assert float(metrics["hit_rate"]) == 0.5  # before: 0.5 * 6/8 + nan * 2/8 = nan
    _, metrics = strategy.forward_backward([_micro(2, 0, 0), _micro(2, 0, 0)])
    assert math.isnan(float(metrics["hit_rate"]))


def test_a_metric_every_micro_batch_measured_is_the_row_weighted_mean_bit_for_bit() -> None:
    strategy = _strategy()
    _, metrics = strategy.forward_backward([_micro(6, 1, 3), _micro(3, 2, 3), _micro(3, 1, 2)])
    rates = [torch.tensor(1 / 3), torch.tensor(2 / 3), torch.tensor(1 / 2)]
    before = rates[0] * (6 / 12) + rates[1] * (3 / 12) + rates[2] * (3 / 12)  # the combination before
    assert float(metrics["hit_rate"]) == float(before)


def test_the_step_record_leaves_out_what_no_micro_batch_measured() -> None:
    window = StepWindow()
    for step, rate in ((1, float("nan")), (2, 0.25)):
        result = StepResult(torch.tensor(1.0), torch.tensor(0.5), True, {"hit_rate": torch.tensor(rate)})
        window.add(step, result, lr=0.1, rows=4, samples=4 * step, tokens=None, tokens_seen=None, extra={},
                   started=0.0)
    first, second = window.take_records()
    assert "hit_rate" not in first and second["hit_rate"] == 0.25


def test_a_micro_batch_of_weight_0_adds_nothing_even_an_infinite_metric() -> None:
    """A micro-batch with no item its loss counts (weight 0) may report a metric its empty rows
    make infinite (a ratio over nothing but finite numerators): inf * 0 was NaN, and the step's
    metric, measured by the other micro-batch, went missing from its record."""
    sums = MetricSums()
    sums.add({"ratio": torch.tensor(math.inf), "acc": torch.tensor(0.25)}, 0.0)
    sums.add({"ratio": torch.tensor(3.0), "acc": torch.tensor(0.5)}, 1.0)
    out = MetricSums.unpacked(sums.packed())
    assert out["ratio"].item() == 3.0
    assert out["acc"].item() == 0.5


def test_a_micro_batch_that_returned_no_metric_weighs_nothing() -> None:
    """A micro-batch for which the model returns the loss alone (or a mapping without the metric)
    did not measure it: the step's value is the other micro-batch's, as for a NaN one (its weight
    was left out of the total only, which halved the value: 0.4 for 0.8)."""
    sums = MetricSums()
    sums.add({}, 0.5)
    sums.add({"acc": torch.tensor(0.8)}, 0.5)
    assert MetricSums.unpacked(sums.packed())["acc"].item() == torch.tensor(0.8).item()  # was 0.4
    sums = MetricSums()
    sums.add({"acc": torch.tensor(0.8)}, 0.25)
    sums.add({"other": torch.tensor(1.0)}, 0.75)
    out = MetricSums.unpacked(sums.packed())
    assert out["acc"].item() == torch.tensor(0.8).item() and out["other"].item() == 1.0
