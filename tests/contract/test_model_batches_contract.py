"""The model contract's call on a batch (:mod:`_pairing`) catches what a plugin's model gets
wrong: a per-row loss vector, a metric named like a value the trainer logs, a non-finite loss;
and a model that no registered dataset fits is skipped with what to register."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _labelled import LabelledBatches
from _pairing import call_on_batches
from torch import nn
from torch.nn import functional as F

from deepseek import hookimpl
from deepseek.data.dataset import Dataset
from deepseek.errors import PluginError, UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


class Rows(Dataset):
    """Batches ``{"x": (rows, 3), "y": (rows,)}`` from a fixed generator."""

    def __init__(self, options: Any, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.index = 0

    def _batch(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1000 + index)
        return {"x": torch.randn(self.batch_size, 3, generator=g), "y": torch.randn(self.batch_size, generator=g)}

    def __next__(self) -> dict[str, torch.Tensor]:
        self.index += 1
        return self._batch(self.index)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(-1 - i) for i in range(min(limit, 2))]

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = state["index"]


class Regressor(TrainableModel):
    """``model(x, y)``: squared error; ``MODE`` picks how the output breaks the contract."""

    MODE = "ok"

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        error = (self.fc(x).squeeze(-1) - y) ** 2
        mode = type(self).MODE
        if mode == "vector":
            return {"loss": error}
        if mode == "reserved":
            return {"loss": error.mean(), "lr": error.max()}
        if mode == "nan":
            return error.mean() * float("nan")
        if mode == "epsilon":  # an epsilon below bf16's resolution at 1: lost once the weights are bf16 (1 / 0)
            return error.mean() / (torch.ones((), dtype=self.fc.weight.dtype) + 1e-3 - 1)
        if mode == "fp32 mask":  # a float mask made in the default dtype, whatever the weights' (CUDA refuses it)
            h = self.fc(x)[:, None, :]
            error = error + F.scaled_dot_product_attention(h, h, h, attn_mask=torch.zeros(1, 1)).flatten()
        return {"loss": error.mean(), "max_error": error.max()}


class Lonely(TrainableModel):
    """Takes batches no registered dataset has (``pixels``)."""

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(pixels).mean()


class Spare(Regressor):
    """A regressor with a second head its loss never uses: one process trains around it, ``ddp``
    stops at the first step of a launched job (find_unused_parameters)."""

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.spare = nn.Linear(3, 1)


class Exported(Spare):
    """Declares that it does not train: no gradient is asked of it."""

    not_trainable = "its weights are constants of an exported graph; train the model it came from"


class Routed(Spare):
    """Declares that some steps leave parameters out (a router's unpicked expert): no gradient is
    required of every parameter, but a non-finite one still fails."""

    skips_parameters = True
    POISON = False

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        out = super().forward(x, y)
        if type(self).POISON:  # a gradient that is there must be finite
            self.fc.weight.register_hook(lambda g: g * float("inf"))
        return out


class Declares(Regressor):
    """Declares a metric other than the one it reports (``max_error``)."""

    def metric_names(self) -> tuple[str, ...]:
        return ("mean_error",)


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.regressor", Regressor, description="squared error on three features")
        register("acme.declares", Declares, description="a regressor declaring a metric it does not report")
        register("acme.spare", Spare, description="a regressor with an unused head")
        register("acme.routed", Routed, description="a regressor whose second head some steps skip")
        register("acme.exported", Exported, description="a regressor that does not train")
        register("acme.lonely", Lonely, description="a model for data nobody registered")

    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("acme.rows", Rows, description="three features and a target")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-contract").status == "ok"
    return host


def test_a_model_that_meets_the_contract_is_called_on_the_data_it_takes(host: PluginHost, tmp_path: Path) -> None:
    calls = call_on_batches(host, "acme.regressor", tmp_path)
    assert list(calls.outputs) == ["acme-contract:acme.rows"]
    loss, metrics = calls.outputs["acme-contract:acme.rows"]
    assert loss.dim() == 0 and loss.item() > 0 and list(metrics) == ["max_error"]
    assert metrics["max_error"].item() >= loss.item() > 0
    assert set(calls.refused) == {"deepseek-core:hf", "deepseek-core:text"}  # GPT-style batches: forward takes x and y
    assert "unexpected ['input_ids', 'targets']" in calls.refused["deepseek-core:text"]


@pytest.mark.parametrize(("mode", "kind", "error"), [
    # the model's broken answer: its plugin's line, as the trainer gives it (was the UsageError
    # "model 'acme.regressor': output['loss'] is a tensor of shape (4,)")
    ("vector", PluginError, r"^model 'acme\.regressor' \(acme-contract .*\): forward returned a 'loss' that is a "
                            r"tensor of shape \(4,\)"),
    ("reserved", PluginError, r"^model 'acme\.regressor' \(acme-contract .*\): forward returned metrics \['lr'\], "
                              r"names the trainer logs itself"),  # was the UsageError "metrics ['lr'] are names ..."
])
def test_a_broken_output_fails_with_the_trainers_own_message(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, kind: type[Exception],
        error: str) -> None:
    monkeypatch.setattr(Regressor, "MODE", mode)
    with pytest.raises(kind, match=error):
        call_on_batches(host, "acme.regressor", tmp_path)


def test_metrics_other_than_the_declared_ones_fail(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=re.escape(
            "model 'acme.declares' declares metrics ('mean_error',) but reports ['max_error'] on dataset "
            "'acme-contract:acme.rows'")):
        call_on_batches(host, "acme.declares", tmp_path)


def test_a_non_finite_loss_fails(host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Regressor, "MODE", "nan")
    with pytest.raises(AssertionError, match=r"model 'acme\.regressor' on dataset 'acme-contract:acme\.rows': non-finite output"):
        call_on_batches(host, "acme.regressor", tmp_path)


def test_a_float_mask_not_in_the_weights_dtype_fails_under_bf16(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fine in fp32 and on the CPU in bf16; CUDA refuses it once DeepSpeed's bf16 casts the parameters alone
    monkeypatch.setattr(Regressor, "MODE", "fp32 mask")
    with pytest.raises(AssertionError, match=re.escape(
            "model 'acme.regressor' on dataset 'acme-contract:acme.rows': attention masks of another dtype than the "
            "queries' with bf16 parameters [(torch.bfloat16, torch.float32)]")):
        call_on_batches(host, "acme.regressor", tmp_path)


def test_a_loss_finite_only_in_fp32_fails_under_bf16(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Regressor, "MODE", "epsilon")
    with pytest.raises(AssertionError, match=re.escape(
            "model 'acme.regressor' on dataset 'acme-contract:acme.rows': with its parameters alone in bf16 "
            "(DeepSpeed's bf16) the loss is inf")):
        call_on_batches(host, "acme.regressor", tmp_path)


def test_a_parameter_the_loss_does_not_reach_fails(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=re.escape(
            "parameters ['spare.weight', 'spare.bias'] get no gradient from the loss on the first training batch of "
            "dataset 'acme-contract:acme.rows'; use every parameter in forward or do not create it (docs/plugins.md section 10; "
            "declare TrainableModel.skips_parameters if some steps leave them out, or not_trainable if it does not "
            "train)")):
        call_on_batches(host, "acme.spare", tmp_path)


def test_a_model_that_declares_it_skips_parameters_may_leave_some_without_a_gradient(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mixture-of-experts routing, or a head for some labels only: legitimate, and ddp trains it with
    # strategy.find_unused_parameters; the declaration lets the unused head through, not a bad gradient.
    calls = call_on_batches(host, "acme.routed", tmp_path)
    assert list(calls.outputs) == ["acme-contract:acme.rows"]
    monkeypatch.setattr(Routed, "POISON", True)
    with pytest.raises(AssertionError, match=r"model 'acme\.routed' on dataset 'acme-contract:acme\.rows': non-finite gradients"):
        call_on_batches(host, "acme.routed", tmp_path)


def test_a_model_that_declares_it_does_not_train_is_asked_for_no_gradient(host: PluginHost, tmp_path: Path) -> None:
    calls = call_on_batches(host, "acme.exported", tmp_path)
    assert list(calls.outputs) == ["acme-contract:acme.rows"]
    loss, _ = calls.outputs["acme-contract:acme.rows"]
    assert loss.grad_fn is not None  # not run under no_grad: backward is left out because of the declaration


def test_a_model_no_dataset_fits_is_skipped_saying_what_to_register(host: PluginHost, tmp_path: Path) -> None:
    calls = call_on_batches(host, "acme.lonely", tmp_path)
    assert calls.outputs == {}
    reason = calls.skip_reason("acme.lonely")
    assert reason.startswith("model 'acme.lonely': no registered dataset's batches fit it (")
    assert "acme-contract:acme.rows: model 'acme.lonely': the dataset's batches (keys ['x', 'y']) do not fit" in reason
    assert reason.endswith("register a dataset whose batches it takes (its check_data accepts them, its forward "
                           "takes their keys) in the same plugin, and this check calls the model on its first batch")


@dataclass(frozen=True)
class LabelsOptions:
    classes: int = 5


class Labels(LabelledBatches):
    """Batches ``{"x": (rows, 3), "label": (rows,)}`` with labels ``0 .. classes - 1``, declared."""

    Options = LabelsOptions

    def _batch(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(index)
        return {"x": torch.randn(self.batch_size, 3, generator=g),
                "label": torch.arange(self.batch_size) % self.options.classes}


@dataclass(frozen=True)
class CountsOptions:
    num_classes: int = 2  # a config naming dataset "labels" sets it to the data's 5


class Counts(TrainableModel):
    """A classifier whose per-class counts index by label: a label >= num_classes is an IndexError."""

    Options = CountsOptions

    def __init__(self, options: CountsOptions) -> None:
        super().__init__()
        self.fc = nn.Linear(3, options.num_classes)
        self.num_classes = options.num_classes

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> Any:
        logits = self.fc(x)
        counts = torch.zeros(self.num_classes).index_put_((label,), torch.ones(len(label)), accumulate=True)
        return {"loss": nn.functional.cross_entropy(logits, label), "seen": counts.count_nonzero() / self.num_classes}


class LabelsPlugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("acme.counts", Counts, description="classifier sized by the data")

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.labels", Labels, description="labels 0..4")


def test_a_model_gets_the_class_count_its_dataset_declares(tmp_path: Path) -> None:
    # A config naming both gives the model model_num_classes (docs/plugins.md section 11); the
    # contract call on the batch builds the model the same way, not from its default of 2.
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(LabelsPlugin(), dist="acme-labels").status == "ok"
    calls = call_on_batches(host, "acme.counts", tmp_path)
    _loss, metrics = calls.outputs["acme-labels:acme.labels"]
    assert float(metrics["seen"]) == pytest.approx(4 / 5)  # labels 0..3 of 4 rows, of the 5 classes built


class Confusion(TrainableModel):
    """Macro recall over the set from summed per-class counts (docs/plugins.md section 10, whole-set
    metrics); ``MODE`` picks how ``metrics_from_totals`` breaks the contract."""

    Options = CountsOptions
    MODE = "ok"

    def __init__(self, options: CountsOptions) -> None:
        super().__init__()
        self.fc = nn.Linear(3, options.num_classes)
        self.num_classes = options.num_classes

    def metric_names(self) -> tuple[str, ...]:
        return ("recall",)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> Any:
        logits = self.fc(x)
        hits = torch.zeros(self.num_classes, 2, dtype=torch.float64)
        hits[:, 0].index_put_((label,), (logits.argmax(-1) == label).double(), accumulate=True)
        hits[:, 1].index_put_((label,), torch.ones(len(label), dtype=torch.float64), accumulate=True)
        return {"loss": nn.functional.cross_entropy(logits, label), "totals": {"hits": hits}}

    def metrics_from_totals(self, totals: Any) -> Any:
        if type(self).MODE == "list":
            return [1.0]
        hits = totals["hits"]
        return {"recall": (hits[:, 0] / hits[:, 1].clamp_min(1)).mean()}


class ConfusionPlugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("acme.confusion", Confusion, description="macro recall over the set")

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.labels", Labels, description="labels 0..4")


def test_whole_set_metrics_count_as_the_models_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # metric_names() lists the whole-set names too, so the contract call reports them beside the means
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(ConfusionPlugin(), dist="acme-confusion").status == "ok"
    torch.manual_seed(0)
    model = Confusion(CountsOptions(num_classes=5))
    batch = Labels(LabelsOptions(), batch_size=4, seed=0).__next__()
    hits = model(**batch)["totals"]["hits"]
    calls = call_on_batches(host, "acme.confusion", tmp_path)
    _loss, metrics = calls.outputs["acme-confusion:acme.labels"]
    assert sorted(metrics) == ["recall"]
    assert float(metrics["recall"]) == pytest.approx(float((hits[:, 0] / hits[:, 1].clamp_min(1)).mean()))
    monkeypatch.setattr(Confusion, "MODE", "list")
    with pytest.raises(UsageError, match=r"^model 'acme.confusion': metrics_from_totals returned list; it must"):
        call_on_batches(host, "acme.confusion", tmp_path / "list")


class Served(Regressor):
    """``Regressor`` with capability ``serving``; ``SERVE`` picks how its prediction breaks the contract."""

    SERVE = "ok"

    def serving_inputs(self, batch: Any) -> Any:
        return {"x": batch["x"]}

    def serving_forward(self, inputs: Any) -> torch.Tensor:
        out = self.fc(inputs["x"])
        return out[:1] if type(self).SERVE == "one-row" else out


class ServedPlugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("acme.served", Served, description="squared error, served")

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.rows", Rows, description="three features and a target")


def test_a_serving_model_predicts_a_row_per_row_of_the_validation_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what `deepseek export` traces, checked on each dataset the model takes, as section 9 says
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(ServedPlugin(), dist="acme-served").status == "ok"
    assert list(call_on_batches(host, "acme.served", tmp_path).outputs) == ["acme-served:acme.rows"]
    monkeypatch.setattr(Served, "SERVE", "one-row")
    with pytest.raises(AssertionError, match=r"model 'acme\.served' on dataset 'acme-served:acme\.rows': serving_forward gave "
                       r"\(1, 1\), not a row per input row"):
        call_on_batches(host, "acme.served", tmp_path / "one-row")
    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text().split())
    assert "a model with capability `serving` gives one finite tensor with a row per row" in doc
