"""Whole-set metrics (``"totals"`` + ``TrainableModel.metrics_from_totals``): macro F1 from a
confusion matrix summed over the whole validation set, which a mean over batches cannot give.

The reported ``val_macro_f1`` must equal F1 computed by hand from the trained model's predictions
on every validation row the evaluation reads, in ``deepseek.fit``'s result, ``metrics.jsonl`` and
``deepseek.evaluate`` alike; and it must differ from the mean of per-batch F1 (so the test sees
the difference it exists for). Bad totals and bad returns are one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.training.metrics import read_metrics

CLASSES = 3


def f1_of(confusion: torch.Tensor) -> torch.Tensor:
    tp = confusion.diag()
    precision = tp / confusion.sum(0).clamp_min(1)
    recall = tp / confusion.sum(1).clamp_min(1)
    return torch.nan_to_num(2 * precision * recall / (precision + recall)).mean()


def confusion_of(label: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    return torch.zeros(CLASSES, CLASSES, dtype=torch.float64).index_put_(
        (label, pred), torch.ones(len(label), dtype=torch.float64), accumulate=True)


class Net(TrainableModel):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Linear(16, CLASSES))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        logits = self.body(x)
        pred = logits.argmax(-1)
        return {"loss": nn.functional.cross_entropy(logits, label),
                "batch_f1": f1_of(confusion_of(label, pred)),  # what a mean over batches would report
                "totals": {"confusion": confusion_of(label, pred)}}

    def metrics_from_totals(self, totals: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"macro_f1": f1_of(totals["confusion"]), "rows": float(totals["confusion"].sum())}


def points(n: int, seed: int) -> torch.utils.data.TensorDataset:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.TensorDataset(x, (x > 0).sum(1))


TRAIN, HELD_OUT = points(600, 0), points(200, 1)
SETTINGS = {"train": {"max_steps": 12, "lr": 1e-2, "eval_interval": 6, "monitor": "val_macro_f1",
                      "monitor_mode": "max"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("whole_set") / "run"
    result = deepseek.fit(Net, TRAIN, val_data=HELD_OUT, names=("x", "label"), batch_size=16, strategy="single",
                          config=SETTINGS, run_dir=folder, quiet=True)
    return folder, result


def by_hand(folder: Path) -> tuple[float, float]:
    """F1 over the 128 validation rows an evaluation reads (data.eval_batches, 8 by default, of
    16 rows) and the mean of per-batch F1."""
    model = deepseek.load_model(folder, model=Net())
    x, label = HELD_OUT.tensors
    rows = 8 * 16
    with torch.no_grad():
        pred = model.body(x[:rows]).argmax(-1)
    batch_f1 = [float(f1_of(confusion_of(label[i:i + 16], pred[i:i + 16]))) for i in range(0, rows, 16)]
    return float(f1_of(confusion_of(label[:rows], pred))), sum(batch_f1) / len(batch_f1)


def test_fit_reports_f1_over_the_whole_set(run: tuple[Path, Any]) -> None:
    folder, result = run
    whole, mean_of_batches = by_hand(folder)
    assert result.val_metrics["val_macro_f1"] == pytest.approx(whole, abs=1e-6)
    assert result.val_metrics["val_rows"] == 128.0
    assert result.val_metrics["val_batch_f1"] == pytest.approx(mean_of_batches, abs=1e-5)
    assert abs(whole - mean_of_batches) > 1e-3  # the two differ: this is what totals are for
    records = read_metrics(folder / "metrics.jsonl")
    evaluations = [r for r in records if "val_macro_f1" in r]
    assert [r["step"] for r in evaluations] == [0, 6, 12]
    assert evaluations[-1]["val_macro_f1"] == pytest.approx(whole, abs=1e-6)


def test_evaluate_gives_the_same_numbers(run: tuple[Path, Any]) -> None:
    folder, result = run
    values = deepseek.evaluate(Net(), HELD_OUT, names=("x", "label"), checkpoint=folder)
    assert values["val_macro_f1"] == pytest.approx(result.val_metrics["val_macro_f1"], abs=1e-6)
    assert values["val_rows"] == 128.0  # the run's data.eval_batches


def test_monitor_follows_a_whole_set_metric(run: tuple[Path, Any]) -> None:
    folder, result = run
    records = read_metrics(folder / "metrics.jsonl")
    best = max((r["val_macro_f1"], -r["step"]) for r in records if "val_macro_f1" in r)
    assert result.monitor["name"] == "val_macro_f1"
    assert result.monitor["best"] == pytest.approx(best[0]) and result.monitor["best_step"] == -best[1]


class NoCompute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, CLASSES)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        logits = self.lin(x)
        return {"loss": nn.functional.cross_entropy(logits, label), "totals": {"n": torch.ones(())}}


class BadTotals(Net):
    def __init__(self, totals: Any = None, returned: Any = None) -> None:
        super().__init__()
        self.totals, self.returned = totals, returned

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        out = super().forward(x, label)
        if self.totals is not None:
            out["totals"] = self.totals(label)
        return out

    def metrics_from_totals(self, totals: dict[str, torch.Tensor]) -> Any:
        return self.returned if self.returned is not None else super().metrics_from_totals(totals)


@pytest.mark.parametrize(("make", "message"), [
    (NoCompute, r"^model 'script': output\['totals'\] is returned, but the model does not define metrics_from_totals"),
    (lambda: BadTotals(totals=lambda label: [1, 2]), r"output\['totals'\] is list; it must map names to tensors"),
    (lambda: BadTotals(totals=lambda label: {"n": 3}), r"output\['totals'\]\['n'\] is int; give each total as a "
                                                       r"real-valued tensor"),
    (lambda: BadTotals(totals=growing()), r"output\['totals'\]\['n'\] has shape \(2,\) here and \(1,\) in an "
                                          r"earlier batch"),
    (lambda: BadTotals(returned=[1.0]), r"metrics_from_totals returned list; it must return a mapping"),
    (lambda: BadTotals(returned={"macro_f1": "high"}), r"metrics_from_totals returned 'macro_f1': str"),
    (lambda: BadTotals(returned={"batch_f1": 1.0}), r"metrics_from_totals returned 'batch_f1', which the evaluation "
                                                    r"reports already as val_batch_f1"),
])
def test_bad_totals_are_one_line(make: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        deepseek.evaluate(make(), points(48, 3), names=("x", "label"), batch_size=16)


def growing() -> Any:
    """Totals whose shape grows by one each batch."""
    calls = iter(range(1, 100))
    return lambda label: {"n": torch.ones(next(calls))}


def test_fit_refuses_totals_without_metrics_from_totals_before_writing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"output\['totals'\] is returned, but the model does not define "
                                         r"metrics_from_totals"):
        deepseek.fit(NoCompute, TRAIN, val_data=HELD_OUT, names=("x", "label"), batch_size=16, strategy="single",
                     config={"train": {"max_steps": 2}}, run_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
