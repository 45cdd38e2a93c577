"""Validation combines its batches' metrics by the rule of a step's micro-batches
(``step.MetricSums``): a metric a batch did not return, or returned as NaN, was not measured
there, so it is the weighted mean over the batches that measured it; one no batch measured is NaN.
Before, the names came from the first batch alone: a name missing from a later batch was a
KeyError traceback, and one a later batch added first was dropped without a word."""

from __future__ import annotations

import math

import pytest
import torch

from deepseek.training.evaluation import summarize


def batch(loss: float, **metrics: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return torch.tensor(loss), {k: torch.tensor(v) for k, v in metrics.items()}


def test_a_name_a_later_batch_lacks_is_the_mean_over_the_batches_that_returned_it() -> None:
    out = summarize([batch(1.0, acc=0.5, rare=0.2), batch(3.0, acc=0.7)], weights=[2, 6])
    assert out["val_loss"] == pytest.approx((1.0 * 2 + 3.0 * 6) / 8)
    assert out["val_acc"] == pytest.approx((0.5 * 2 + 0.7 * 6) / 8)
    assert out["val_rare"] == pytest.approx(0.2)  # the first batch's alone, not 0.2 x 2 / 8


def test_a_name_only_a_later_batch_returns_is_recorded() -> None:
    out = summarize([batch(1.0, acc=0.5), batch(2.0, acc=0.7, late=0.9), batch(3.0, acc=0.1, late=0.3)])
    assert out["val_late"] == pytest.approx((0.9 + 0.3) / 2)  # unweighted: the batches that measured it
    assert out["val_acc"] == pytest.approx((0.5 + 0.7 + 0.1) / 3)
    assert sorted(out) == ["val_acc", "val_late", "val_loss"]


def test_a_nan_metric_is_not_measured_there_and_nan_where_no_batch_measured_it() -> None:
    out = summarize([batch(1.0, acc=float("nan"), none=float("nan")), batch(2.0, acc=0.25, none=float("nan"))],
                    weights=[3, 1])
    assert out["val_acc"] == 0.25
    assert math.isnan(out["val_none"])
    assert out["val_loss"] == pytest.approx((1.0 * 3 + 2.0) / 4)  # the loss is every batch's


def test_where_every_batch_measured_every_name_the_means_are_the_plain_ones_bit_for_bit() -> None:
    values = [batch(0.1 * i + 0.3, acc=1 / (i + 3), f1=0.37 * i) for i in range(5)]
    weights = [7, 3, 5, 1, 9]
    out = summarize(values, weights=weights)
    assert out["val_acc"] == sum(float(m["acc"]) * n for (_, m), n in zip(values, weights, strict=True)) / sum(weights)
    plain = summarize(values)
    assert plain["val_f1"] == sum(float(m["f1"]) for _, m in values) / len(values)
