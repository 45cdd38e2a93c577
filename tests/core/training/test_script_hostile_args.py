"""Arguments of the wrong kind given to ``deepseek.fit``, ``deepseek.evaluate`` and
``deepseek.load_model``: each is one ``UsageError`` line naming the argument, raised before the
run folder exists, never a ``TypeError`` or ``AttributeError`` from deep inside; and models whose
loss cannot train (no trainable parameters, a loss without a gradient or of an integer dtype) or
that declare they do not train (``TrainableModel.not_trainable``) are refused in one line without leaving a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek import hookimpl
from deepseek.errors import UsageError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

CONFIG = {"train": {"max_steps": 2}, "checkpoint": {"interval": 0}, "logging": {"progress": False, "plot": False}}
NAMES = ("x", "label")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


def points(n: int = 120) -> torch.utils.data.TensorDataset:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.TensorDataset(x, (x > 0).sum(1))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.layer(x), label)


def fit(plugins: PluginHost, folder: Path, **changes: Any) -> Any:
    args: dict[str, Any] = {"model": Net, "data": points(), "names": NAMES, "batch_size": 8, "config": CONFIG,
                            "run_dir": folder, "quiet": True, "host": plugins}
    return deepseek.fit(**{**args, **changes})


@pytest.mark.parametrize(("changes", "message"), [
    ({"val_fraction": "0.1"}, "val_fraction: expected a number, got '0.1' (str)"),
    ({"val_fraction": None}, "val_fraction: expected a number, got None"),
    ({"val_fraction": True}, "val_fraction: expected a number, got True (bool)"),
    ({"names": 5}, "names: expected a list of argument names"),
    ({"names": ("x", "x")}, "names: ['x'] given twice in ('x', 'x')"),
    ({"collate_fn": 5}, "collate_fn: expected a function of a list of samples, got 5 (int)"),
    ({"shuffle": "no"}, "shuffle: expected True or False, got 'no' (str)"),  # "no" would have shuffled
    ({"pin_memory": None}, "pin_memory: expected True or False, got None"),
    ({"quiet": "yes"}, "quiet: expected True or False, got 'yes'"),
    ({"host": "default"}, "host: expected a deepseek.plugins.host.PluginHost or None, got 'default' (str)"),
    ({"run_dir": 5}, "run_dir: expected a path (a str or pathlib.Path), got 5 (int)"),
    ({"resume": ""}, "resume: expected a path (a str or pathlib.Path), got an empty path"),
    ({"model": nn.Linear}, "model: Linear needs the argument(s) in_features, out_features, and fit calls it with none"),
    ({"max_epochs": 1, "val_fraction": [0.1]}, "val_fraction: expected a number, got [0.1] (list)"),
])
def test_a_fit_argument_of_the_wrong_kind_is_one_line_naming_it_and_nothing_is_written(
        host: PluginHost, tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    run_dir = tmp_path / "run"
    if "config" not in changes and "max_epochs" in changes:
        changes["config"] = {"checkpoint": {"interval": 0}}
    with pytest.raises(UsageError) as caught:
        fit(host, run_dir, **changes)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not run_dir.exists()


class NoWeights(nn.Module):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return (x.sum() * 0 + 1.0).requires_grad_()


class Frozen(Net):
    def __init__(self) -> None:
        super().__init__()
        self.requires_grad_(False)


class Detached(Net):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return super().forward(x, label).detach()


class IntegerLoss(Net):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return (self.layer(x).argmax(-1) != label).sum()


class Exported(TrainableModel):
    """Declares that it does not train (TrainableModel.not_trainable)."""

    not_trainable = "its weights are an exported graph's constants; train the model it was exported from"

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.layer(x), label)


class MisDeclared(Exported):
    not_trainable = True  # type: ignore[assignment]


@pytest.mark.parametrize(("model", "message"), [
    (Exported, "model 'script' does not train: its weights are an exported graph's constants; train the model it "
               "was exported from"),
    (NoWeights, "model 'script': NoWeights has no trainable parameters (0 parameter(s), none with requires_grad)"),
    (Frozen, "model 'script': Frozen has no trainable parameters (2 parameter(s), none with requires_grad)"),
    # the script's own model answering outside the contract: the script's line (calls.scripts_own)
    (Detached, "the model given to deepseek.fit: forward returned a loss that does not depend on any trainable "
               "parameter"),
    (IntegerLoss, "the model given to deepseek.fit: forward returned a loss of dtype int64; it must be a floating-point tensor"),
])
def test_a_model_whose_loss_cannot_train_is_one_line_and_leaves_no_run_folder(
        host: PluginHost, tmp_path: Path, model: type[nn.Module], message: str) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(UsageError) as caught:
        fit(host, run_dir, model=model)
    assert message in str(caught.value)
    assert not run_dir.exists()


def test_a_misdeclared_not_trainable_reaches_the_script_as_its_one_line(host: PluginHost, tmp_path: Path) -> None:
    """A ``not_trainable`` that is no line of text is the model's broken answer: a script's own
    model is blamed on no plugin, and its author is the user, so the script gets its one-line
    UsageError (deepseek.plugins.calls.scripts_own; a plugin's model: test_declared_answers),
    before any run folder."""
    run_dir = tmp_path / "run"
    with pytest.raises(UsageError) as caught:
        fit(host, run_dir, model=MisDeclared)
    assert str(caught.value) == ("the model given to deepseek.fit: not_trainable is True; it must be None (the model "
                                 "trains) or one line saying why the model does not train (docs/plugins.md, 'Models')")
    assert not run_dir.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, host: PluginHost) -> Path:
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    fit(host, run_dir)
    return run_dir


@pytest.mark.parametrize(("changes", "message"), [
    ({"model": Net}, "model: expected the torch.nn.Module to score (an instance: model=Net()), got type"),
    ({"model": None}, "model: missing; pass both model and data"),  # model=None is the run's own (checkpoint= alone)
    ({"device": "cuda:7"}, "device: 'cuda:7'"),  # no such device here: not torch's driver error
    ({"device": "gpu"}, "device: 'gpu' is not allowed; allowed values: 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ({"device": None}, "device: expected a device name such as 'cpu' or 'cuda:0', got None"),
    ({"checkpoint": 5}, "checkpoint: expected a path (a str or pathlib.Path), got 5 (int)"),
    ({"names": 5}, "names: expected a list of argument names"),
    ({"collate_fn": "stack"}, "collate_fn: expected a function of a list of samples, got 'stack' (str)"),
    ({"data": []}, "data: no validation samples; give at least one"),
    ({"model": nn.Linear(2, 3), "checkpoint": None},
     "the dataset's batches (keys ['label', 'x']) do not fit Linear.forward(input)"),
])
def test_an_evaluate_argument_of_the_wrong_kind_is_one_line_naming_it(trained: Path, changes: dict[str, Any],
                                                                     message: str) -> None:
    args: dict[str, Any] = {"model": Net(), "data": points(), "names": NAMES, "checkpoint": trained}
    with pytest.raises(UsageError) as caught:
        deepseek.evaluate(**{**args, **changes})
    assert message in str(caught.value)


def test_evaluate_takes_a_torch_device(trained: Path) -> None:
    got = deepseek.evaluate(Net(), points(), names=NAMES, checkpoint=trained, device=torch.device("cpu"))
    assert got == deepseek.evaluate(Net(), points(), names=NAMES, checkpoint=trained)


@pytest.mark.parametrize(("path", "changes", "message"), [
    (5, {}, "path: expected a path (a str or pathlib.Path), got 5 (int)"),
    (None, {}, "path: expected a path (a str or pathlib.Path), got None"),
    ("RUN", {"device": "cuda:7"}, "device: 'cuda:7'"),
    ("RUN", {"device": 0}, "device: expected a device name such as 'cpu' or 'cuda:0', got 0 (int)"),
    ("RUN", {"host": "mine"}, "host: expected a deepseek.plugins.host.PluginHost or None, got 'mine'"),
])
def test_a_load_model_argument_of_the_wrong_kind_is_one_line_naming_it(trained: Path, path: Any,
                                                                       changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        deepseek.load_model(trained if path == "RUN" else path, model=Net(), **changes)
    assert message in str(caught.value)


def test_a_run_dir_that_is_a_file_is_named_as_fits_argument(host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(UsageError, match=r"^run_dir: .*taken is a file, not a folder; give a folder path$"):
        fit(host, tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("case", ["a config.toml of the user's", "a folder at metrics.jsonl", "a live job's lock"])
def test_the_trainers_run_folder_refusals_name_fits_run_dir(host: PluginHost, tmp_path: Path, case: str) -> None:
    """What fit's early check leaves to the trainer (a file in the folder no run wrote, a folder in
    a run file's place, a folder a live job holds) said 'pick another --run-dir', the command's
    option: the trainer names fit's argument as fit gave it. Nothing in the folder changes."""
    import os

    from deepseek.training.run_lock import LOCK_FILE, try_lock

    run = tmp_path / "run"
    run.mkdir()
    fd = None
    if case == "a config.toml of the user's":
        (run / "config.toml").write_text("mine = 1\n")
        expected = (f"{run / 'config.toml'}: the run writes its config.toml there, and this file is not one a run "
                    "wrote (your own?); move it out of the folder, or pick another run_dir= / logging.name")
    elif case == "a folder at metrics.jsonl":
        (run / "metrics.jsonl").mkdir()
        expected = (f"{run / 'metrics.jsonl'}: is a folder where the run writes its metrics.jsonl; move it away or "
                    "pick another run_dir=")
    else:
        fd = try_lock(run / LOCK_FILE)  # another open file of the lock: held as another job's would be
        assert fd is not None
        expected = (f"run folder {run} is in use by another live job (its pid is not recorded yet); wait for it to "
                    "end or stop it, or pick another run_dir= / logging.name")
    before = sorted(p.name for p in run.iterdir())
    try:
        with pytest.raises(UsageError) as caught:
            fit(host, run)
    finally:
        if fd is not None:
            os.close(fd)
    assert str(caught.value) == expected
    assert sorted(p.name for p in run.iterdir()) == before


def test_resuming_a_run_of_another_model_names_fits_arguments(host: PluginHost, tmp_path: Path,
                                                              tiny_config: Any) -> None:
    """``fit(resume=RUN)`` of a GPT run: the refusal said 'resume without the config file ... (--run-dir)',
    the command's fix; from fit it names the run's model and data and fit's run_dir=. Nothing is written."""
    from deepseek.training.trainer import Trainer

    Trainer(tiny_config(train={"max_steps": 1, "warmup_steps": 0}), run_dir=tmp_path / "gpt", quiet=True).fit()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UsageError) as caught:
        fit(host, None, resume=tmp_path / "gpt")
    step = tmp_path / "gpt" / "checkpoints" / "step-1"
    assert str(caught.value) == (
        f"{step / 'trainer.json'}: the checkpoint is a run of model 'tiny' on data 'text', this config trains "
        "'script' on 'script'; a resumed run keeps its model and data: resume it with model 'tiny' on data 'text', "
        "or train this model and data in another run folder (run_dir=)")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


class _StateFile:
    """A plugin whose lifecycle hooks write ``acme-state.jsonl`` into each run folder."""

    @hookimpl
    def deepseek_declare_run_files(self, declare: Any) -> None:
        declare(["acme-state.jsonl"])


def test_a_run_dir_in_a_plugins_run_file_place_is_named_as_fits_argument(tmp_path: Path) -> None:
    """fit checked ``run_dir`` without the run's host (core's run files only), so a plugin's
    declared file in another run's folder passed it, and the trainer refused it later as the
    command's ``--run-dir``. Checked first with the script's host: fit's argument, nothing written."""
    plugins = PluginHost(PluginSettings(autoload=False))
    assert plugins.register_plugin(_StateFile(), dist="deepseek-acme", version="0.1.0").status == "ok"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text('[model]\nname = "gpt"\n')
    for place in (run / "acme-state.jsonl", run / "acme-state.jsonl" / "sub"):  # the file's place, or below it
        with pytest.raises(UsageError, match=f"^run_dir: {place} is a place of the run folder {run}'s own files"):
            fit(plugins, place)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml"]


class FailsToTrain(Net):
    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.training:  # the step-0 evaluation passes, step 1 fails
            raise RuntimeError("a bug in the training branch")
        return super().forward(x, label)


def test_an_empty_run_dir_given_is_left_empty_when_the_run_fails_before_its_first_step(
        host: PluginHost, tmp_path: Path) -> None:
    run_dir = tmp_path / "given"
    run_dir.mkdir()
    with pytest.raises(RuntimeError, match="a bug in the training branch"):
        fit(host, run_dir, model=FailsToTrain)
    assert run_dir.is_dir()
    assert list(run_dir.iterdir()) == []  # no config.toml, metrics.jsonl or lock of a run that never trained


class Lying(torch.utils.data.Dataset):
    def __len__(self) -> Any:
        return -1

    def __getitem__(self, i: int) -> Any:
        return torch.zeros(2), torch.tensor(0)


def test_a_model_on_the_meta_device_or_a_dataset_with_a_bad_len_is_one_line(host: PluginHost, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^model: Net's 'layer.weight' is on the meta device"):
        fit(host, tmp_path / "meta", model=lambda: Net().to("meta"))
    with pytest.raises(UsageError, match=r"^data: Lying.__len__ returned -1; it must return the number of samples"):
        fit(host, tmp_path / "len", data=Lying())
    assert not (tmp_path / "meta").exists() and not (tmp_path / "len").exists()



def test_names_that_are_not_forward_s_arguments_say_to_fix_names(host: PluginHost, tmp_path: Path) -> None:
    """The refusal named ``data.name`` and ``model.name``, config keys a ``deepseek.fit`` script does
    not have (fit refuses a ``[model]`` table); it names ``names=`` instead, for ``evaluate`` too."""
    with pytest.raises(UsageError) as caught:
        fit(host, tmp_path / "run", names=("features", "y"))
    line = str(caught.value)
    assert "do not fit Net.forward(x, label): unexpected ['features', 'y']; missing ['label', 'x']; name the " \
           "samples' parts as forward's arguments with names=(...)" in line and "data.name" not in line, line
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match=r"forward\(input\): .* with names=\(\.\.\.\)"):
        deepseek.evaluate(nn.Linear(2, 3), points(), names=NAMES)
