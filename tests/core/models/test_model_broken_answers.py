"""A model answering outside its contract under ``deepseek train`` (strategy ``single``) is its
plugin's bug: one ``PluginError`` line naming the model, its distribution and the method, exit
code 1 (``deepseek.models.checks``, each check raising ``BrokenAnswer`` in the model's block):
a ``forward`` whose output holds no 0-dim loss (found on the first validation batch, or by a
training step), a loss of an integer dtype, a training loss without ``grad_fn``, a metric named
like a value the trainer logs itself (returned or declared), a ``metric_names()`` that is no tuple
of names or differs from what ``forward`` returns, a ``check_data`` that returns something. Was:
the user's ``UsageError``, exit code 2, as if the config or data were wrong. A ``check_data`` that
*raises* ``UsageError`` refuses the user's data, and a model left with nothing to train is refused
before it trains: those stay exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.config.components import NoOptions
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError, UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import PLUGIN_BUG
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.run_values import RESERVED_METRICS, config_values

pytestmark = pytest.mark.usefixtures("one_thread")

LABEL = f"model 'acme.answers' (deepseek-acme 0.1, registered by {__name__})"


class Answers(TrainableModel):
    """A bigram model on byte tokens whose answers the test picks (``FAULT``)."""

    Options = NoOptions
    FAULT: ClassVar[str] = ""

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)
        if type(self).FAULT == "frozen":  # as a config freezing every weight leaves it: the user's line
            self.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> Any:
        logits = self.head(self.embed(input_ids))
        per_row = nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=1)
        fault = type(self).FAULT
        if fault == "loss per row" or (fault == "loss per row in training" and self.training):
            return per_row
        if fault == "no loss":
            return {"logits": logits}
        if fault == "integer loss":
            return per_row.mean().long()
        if fault == "detached in training" and self.training:
            return per_row.mean().detach()
        if fault == "reserved metric":
            return {"loss": per_row.mean(), "lr": 0.5}
        return per_row.mean()

    def metric_names(self) -> Any:
        return {"metric_names": "accuracy", "metric_names reserved": ("lr",),
                "metric_names differ": ("accuracy",)}.get(type(self).FAULT)

    def check_data(self, batch: Any, dataset: Any) -> Any:
        if type(self).FAULT == "check_data returns":
            return "data: not the bytes this model wants"
        if type(self).FAULT == "check_data raises":
            raise UsageError("data: not the bytes this model wants; set data.name to acme.bytes")
        return None


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.answers", Answers, description="a model whose answers break its contract")


@pytest.fixture
def host() -> Any:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1").status == "ok"
    yield host
    Answers.FAULT = ""


def _train(host: PluginHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    toml = tmp_path / "c.toml"
    toml.write_text('[model]\nname = "acme.answers"\n[data]\nseq_len = 16\nbatch_size = 4\neval_batches = 1\n'
                    'shuffle_buffer = 16\n[train]\nmax_steps = 2\nwarmup_steps = 0\n[strategy]\ndevice = "cpu"\n'
                    '[logging]\nprogress = false\nplot = false\n', encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["train", str(toml), "--run-dir", str(tmp_path / "run"), "--quiet"], host=host)
    return info.value.code, capsys.readouterr().err.splitlines()


RESERVED = ("metrics ['lr'], names the trainer logs itself; its metrics must take other names (any but "
            f"{', '.join(sorted(RESERVED_METRICS))}) (docs/plugins.md, 'Models')")
LOSS_PER_ROW = ("forward returned a tensor of shape (4,) for a batch; it must return the mean loss (a 0-dim tensor: "
                "loss.mean(), or reduction='mean' in the loss function) or a mapping with the key 'loss' "
                "(docs/plugins.md, 'Models')")


@pytest.mark.parametrize(("fault", "what"), [
    ("loss per row", LOSS_PER_ROW),  # the first validation batch's evaluation, before anything is written
    ("loss per row in training", LOSS_PER_ROW),  # the strategy's training step
    ("no loss", "forward returned a dict without the key 'loss' (its keys: 'logits') for a batch; it must return "
                "the mean loss (a 0-dim tensor) or a mapping with the key 'loss' (docs/plugins.md, 'Models')"),
    ("integer loss", "forward returned a loss of dtype int64; it must be a floating-point tensor computed from the model's "
                     "parameters (e.g. cross_entropy(logits, labels))"),
    ("detached in training", "forward returned a loss that does not depend on any trainable parameter (no grad_fn: "
                             "computed under torch.no_grad(), .detach()ed, or a constant); it must compute it from "
                             "the model's outputs"),
    ("reserved metric", f"forward returned {RESERVED}"),
    ("metric_names reserved", f"metric_names() declares {RESERVED}"),
    ("metric_names differ", "metric_names() declares ['accuracy'] but forward returned [] on the first validation "
                            "batch (metrics are its scalar entries: a per-row tensor is not one, reduce it with "
                            ".mean()); metric_names() must return the names forward reports (docs/plugins.md, "
                            "'Models')"),
])
def test_a_forward_without_a_0_dim_loss_or_its_metrics_is_the_models_bug(host: PluginHost, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], fault: str,
                                                         what: str) -> None:
    Answers.FAULT = fault
    assert _train(host, tmp_path, capsys) == (1, [f"error: {LABEL}: {what}; {PLUGIN_BUG}"])
    assert not (tmp_path / "run").exists()


def test_metric_names_that_are_no_tuple_of_names_are_the_models_bug(host: PluginHost, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    Answers.FAULT = "metric_names"
    what = (f"{LABEL}: metric_names() returned 'accuracy'; it must return a tuple of the metric names forward "
            f"reports (() for none) or None when not declared (docs/plugins.md, 'Models'); {PLUGIN_BUG}")
    assert _train(host, tmp_path, capsys) == (1, [f"error: {what}"])
    assert not (tmp_path / "run").exists()
    # read from a config too (deepseek tune's objective check: the model built on the meta device)
    with pytest.raises(PluginError) as raised:
        config_values(config_from_dict({"model": {"name": "acme.answers"}}, host=host), host)
    assert str(raised.value) == what


def test_a_check_data_that_returns_is_the_models_bug_one_that_raises_refuses_the_data(
        host: PluginHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Answers.FAULT = "check_data returns"
    assert _train(host, tmp_path, capsys) == (1, [
        f"error: {LABEL}: check_data returned 'data: not the bytes this model wants'; it must return None to accept "
        f"the data or raise UsageError (one line) to refuse it (docs/plugins.md, 'Models'); {PLUGIN_BUG}"])
    assert not (tmp_path / "run").exists()
    Answers.FAULT = "check_data raises"  # the user's data refused, as the contract says: the user's line
    assert _train(host, tmp_path, capsys) == (2, ["error: data: not the bytes this model wants; set data.name to "
                                                  "acme.bytes"])
    assert not (tmp_path / "run").exists()


class ScriptNet(nn.Module):
    """A script's own model (``deepseek.fit``) whose ``forward`` returns a loss per row."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> Any:
        return {"loss": nn.functional.cross_entropy(self.body(x), label, reduction="none")}


def test_a_scripts_own_model_answering_outside_the_contract_is_the_scripts_one_line(tmp_path: Path) -> None:
    """The script's author is the user: a ``UsageError`` (one line, exit code 2 under ``deepseek
    run``), not the ``BrokenAnswer`` with a traceback nor a plugin's bug."""
    import deepseek

    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, (x > 0).sum(1))
    with pytest.raises(UsageError) as raised:
        deepseek.fit(ScriptNet, data, names=("x", "label"), batch_size=16, strategy="single",
                     config={"train": {"max_steps": 2}}, run_dir=tmp_path / "run", quiet=True)
    assert str(raised.value) == (  # the first batch of the rows fit holds out of the 64 for validation
        "the model given to deepseek.fit: forward returned a 'loss' that is a tensor of shape (6,) (float32); it "
        "must be the mean loss over the batch's rows, a 0-dim tensor: reduce it (loss.mean(), or reduction='mean' "
        "in the loss function)")
    assert not (tmp_path / "run").exists()


def test_a_model_left_with_nothing_to_train_is_the_users_line(host: PluginHost, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Its loss has no ``grad_fn`` because nothing trains, which the user's config decides (a
    frozen model, ``model.freeze_pretrained``): refused before any step as the user's line, the
    fix said, never as the model's bug."""
    Answers.FAULT = "frozen"
    assert _train(host, tmp_path, capsys) == (2, [
        "error: model 'acme.answers': Answers has no trainable parameters (3 parameter(s), none with "
        "requires_grad): there is nothing to train; give it layers with weights, or unfreeze some "
        "(requires_grad_(True))"])
    assert not (tmp_path / "run").exists()


def test_a_scripts_model_of_torchs_own_class_answering_outside_the_contract_is_the_scripts_one_line(
        tmp_path: Path) -> None:
    """The model a script hands over is the script's whatever package its class comes from: a
    ``torch.nn.Sequential`` returning a loss per row is the script's ``UsageError`` as for a
    class of the script's own (was: the bare ``BrokenAnswer``, its class's package being torch's)."""
    import deepseek

    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Linear(2, 1), nn.Flatten(0))
    with pytest.raises(UsageError) as raised:
        deepseek.fit(model, torch.utils.data.TensorDataset(x), names=("input",), batch_size=16, strategy="single",
                     config={"train": {"max_steps": 2}}, run_dir=tmp_path / "run", quiet=True)
    assert str(raised.value) == (
        "the model given to deepseek.fit: forward returned a tensor of shape (6,) for a batch; it must return the "
        "mean loss (a 0-dim tensor: loss.mean(), or reduction='mean' in the loss function) or a mapping with the "
        "key 'loss' (docs/plugins.md, 'Models')")
    assert not (tmp_path / "run").exists()
