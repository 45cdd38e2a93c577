"""``deepseek compare`` of a model whose metric is macro F1 from a confusion matrix (whole-set
metrics: ``"totals"`` + ``metrics_from_totals``): A's and B's F1 are those of all the examples'
summed confusion, not the mean of each row's F1, and every bootstrap resample sums the resampled
examples' confusion (the same examples for A and B); a metric neither model measures gets no
row; the model's ``metrics_from_totals`` raising is one line blaming it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _hosts import enterprise_host
from _inprocess import deepseek_here
from torch import nn

from deepseek import hookimpl
from deepseek.data.dataset import Dataset
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.training.inference import load_trained

CLASSES = 4  # the data's labels are 0, 1, 2: class 3 is never measured
ROWS = 48  # 3 validation batches of 16


def confusion_of(label: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    return torch.zeros(CLASSES, CLASSES, dtype=torch.float64).index_put_(
        (label, pred), torch.ones(len(label), dtype=torch.float64), accumulate=True)


def f1_of(c: np.ndarray) -> float:
    """Macro F1 over the classes that have rows (a class no row has is not measured)."""
    tp, rows, predicted = np.diag(c), c.sum(1), c.sum(0)
    f1 = [2 * tp[k] / (rows[k] + predicted[k]) for k in range(CLASSES) if rows[k] > 0]
    return float(np.mean(f1))


@dataclass(frozen=True)
class F1Options:
    hidden: int = 16


class F1Net(TrainableModel):
    Options = F1Options
    BROKEN = False  # metrics_from_totals divides by zero (a plugin's bug)

    def __init__(self, options: F1Options) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, options.hidden), nn.GELU(), nn.Linear(options.hidden, CLASSES))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, Any]:
        logits = self.body(x)
        return {"loss": nn.functional.cross_entropy(logits, label),
                "totals": {"confusion": confusion_of(label, logits.argmax(-1))}}

    def metric_names(self) -> tuple[str, ...]:
        return ("macro_f1", "recall_3")

    def metrics_from_totals(self, totals: dict[str, torch.Tensor]) -> dict[str, Any]:
        if type(self).BROKEN:
            return {"macro_f1": 1 / 0}
        c = totals["confusion"].numpy()
        out = {"macro_f1": f1_of(c)}
        if c[3].sum() > 0:
            out["recall_3"] = c[3, 3] / c[3].sum()
        return out


@dataclass(frozen=True)
class PointsOptions:
    noise: float = 0.6


class Points(Dataset):
    """2-D points labelled by how many coordinates are positive (0, 1 or 2), with label noise."""

    Options = PointsOptions

    def __init__(self, options: PointsOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.index = 0

    def _batch(self, seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.batch_size, 2, generator=g)
        noisy = x + torch.randn(self.batch_size, 2, generator=g) * self.options.noise
        return {"x": x, "label": (noisy > 0).sum(1)}

    def __next__(self) -> dict[str, torch.Tensor]:
        self.index += 1
        return self._batch(self.seed * 1000 + self.index)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(10**6 + i) for i in range(min(limit, 3))]

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = int(state["index"])


class Acme:
    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001
        register("acme.f1", F1Net, description="macro F1 from a confusion matrix")

    @hookimpl
    def deepseek_register_datasets(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001
        register("acme.points", Points, description="labelled 2-D points")


CONFIG = """
[model]
name = "acme.f1"
[data]
name = "acme.points"
batch_size = 16
eval_batches = 3
[train]
max_steps = {steps}
lr = 0.02
warmup_steps = 0
eval_interval = {steps}
[strategy]
name = "single"
device = "cpu"
[logging]
plot = false
progress = false
"""


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return enterprise_host((Acme(), "deepseek-acme"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, host: PluginHost) -> Path:
    work = tmp_path_factory.mktemp("compare_f1")
    mp = pytest.MonkeyPatch()
    try:
        for name, steps in (("early", 1), ("late", 40)):
            (work / f"{name}.toml").write_text(CONFIG.format(steps=steps))
            code, err, _ = deepseek_here(mp, work, "train", f"{name}.toml", "--run-dir", name, host=host)
            assert code == 0, err
    finally:
        mp.undo()
    return work


def predictions(run: Path, host: PluginHost) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of the run's model on the 48 validation rows, in order."""
    model, _, _ = load_trained(run, "cpu", host=host)
    batches = Points(PointsOptions(), batch_size=16, seed=0).validation_batches(3)
    x, label = torch.cat([b["x"] for b in batches]), torch.cat([b["label"] for b in batches])
    with torch.no_grad():
        return label.numpy(), model.body(x).argmax(-1).numpy()


def confusions(label: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> list[np.ndarray]:
    out = []
    for rows in idx:
        c = np.zeros((CLASSES, CLASSES))
        np.add.at(c, (label[rows], pred[rows]), 1)
        out.append(c)
    return out


def test_f1_is_that_of_the_whole_set_and_resampled_sets(monkeypatch: pytest.MonkeyPatch, runs: Path,
                                                         host: PluginHost) -> None:
    code, err, out = deepseek_here(monkeypatch, runs, "compare", "early", "late", "--resamples", "500",
                                   "--seed", "7", "--latency-runs", "0", "--json", "-", host=host)
    assert code == 0, err
    report = json.loads(out)
    assert report["examples"] == ROWS
    rows = {r["name"]: r for r in report["paired"]}
    assert list(rows) == ["loss", "macro_f1"]  # recall_3: no validation row has class 3
    label, pred_a = predictions(runs / "early", host)
    _, pred_b = predictions(runs / "late", host)
    every = np.arange(ROWS)[None]
    f1_a, f1_b = (f1_of(confusions(label, p, every)[0]) for p in (pred_a, pred_b))
    f1 = rows["macro_f1"]
    assert (f1["a"], f1["b"], f1["diff"]) == pytest.approx((f1_a, f1_b, f1_b - f1_a), abs=1e-12)
    # the mean of each row's own F1 (here its accuracy, 0.354 against 0.389) differs: what the test is for
    per_row = np.mean([f1_of(confusions(label, pred_a, np.array([[i]]))[0]) for i in range(ROWS)])
    assert abs(per_row - f1_a) > 0.02
    # every resample: F1 of the resampled rows' summed confusion, the same rows for A and B
    idx = np.random.default_rng(7).integers(0, ROWS, size=(500, ROWS))
    diffs = np.array([f1_of(b) - f1_of(a) for a, b in zip(confusions(label, pred_a, idx),
                                                          confusions(label, pred_b, idx), strict=True)])
    low, high = np.percentile(diffs, [2.5, 97.5])
    p = max(2 * min((diffs <= 0).mean(), (diffs >= 0).mean()), 1 / 500)
    assert (f1["low"], f1["high"], f1["p_value"]) == pytest.approx((low, high, min(1.0, p)), abs=1e-12)
    assert f1["resamples"] == 500 and f1["better"] == "higher" and f1["diff"] > 0


def test_metrics_from_totals_raising_is_one_line_blaming_the_model(monkeypatch: pytest.MonkeyPatch, runs: Path,
                                                                   host: PluginHost) -> None:
    monkeypatch.setattr(F1Net, "BROKEN", True)
    code, err, _ = deepseek_here(monkeypatch, runs, "compare", "early", "late", "--latency-runs", "0", host=host)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "model 'acme.f1' (deepseek-acme 1.0" in err and "metrics_from_totals raised ZeroDivisionError" in err
    assert "a bug in the plugin" in err
