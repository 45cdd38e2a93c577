"""What a plugin's own code raises at each place the trainer calls it is one line naming the
component and its distribution (a ``PluginError``, exit code 1), not the framework's internal
error, and not blamed on another component: the model's ``check_data`` and ``metric_names``, the
dataset's ``validation_batches``, ``count_tokens`` and ``load_state_dict``, the optimizer
builder's ``create`` and its optimizer's ``step`` (blamed on the optimizer even when the model
comes from the same package), the schedule's ``__init__``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek import hookimpl
from deepseek.data.text import TextDataset
from deepseek.errors import PluginError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.optimizers import OptimizerBuilder
from deepseek.training.schedule import LRSchedule
from deepseek.training.trainer import Trainer

FAULT = {"at": ""}


def fault(where: str) -> None:
    if FAULT["at"] == where:
        raise KeyError(f"bug in {where}")


class Model(GPT):
    def __init__(self, options: GPTConfig) -> None:
        super().__init__(options)

    def check_data(self, batch: Any, dataset: Any) -> None:
        fault("check_data")

    def metric_names(self) -> Any:
        fault("metric_names")
        return super().metric_names()


class Data(TextDataset):
    def validation_batches(self, limit: int) -> list[Any]:
        fault("validation_batches")
        return [_misshapen(batch, "validation") for batch in super().validation_batches(limit)]

    def count_tokens(self, batch: Any) -> int | None:
        fault("count_tokens")
        return super().count_tokens(batch)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        fault("load_state_dict")
        super().load_state_dict(state)

    def __next__(self) -> Any:
        return _misshapen(super().__next__(), "training")


def _misshapen(batch: Any, where: str) -> Any:
    """``batch`` as FAULT says: a tensor a row short (the batch's tensors disagree on their rows),
    or every tensor a row short (a batch of fewer rows than data.batch_size)."""
    if FAULT["at"] == f"ragged {where}":
        return {**batch, "targets": batch["targets"][:-1]}
    if FAULT["at"] == f"short {where}":
        return {k: v[:-1] for k, v in batch.items()}
    return batch


class _Sign(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        fault("step")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


class Sign(OptimizerBuilder):
    state_bytes = 0

    def create(self, groups: Any, lr: float, *, master_weights: bool = False, accumulation: int = 1) -> Any:
        fault("create")
        return _Sign(groups, lr=lr)

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        return {}


@dataclasses.dataclass(frozen=True)
class FlatOptions:
    pass


class Flat(LRSchedule):
    Options = FlatOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fault("__init__")
        super().__init__(*args, **kwargs)

    def lr_at(self, step: int) -> float:
        return self.lr


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("faulty.gpt", Model, description="a GPT with faults")

    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("faulty.text", Data, description="text with faults")

    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("faulty.sign", Sign, description="sign descent with faults")

    @hookimpl
    def deepseek_register_lr_schedules(self, register):  # noqa: ANN001, ANN201
        register("faulty.flat", Flat, description="a flat rate with faults")


@pytest.fixture
def host() -> Any:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-faulty", version="0.1").status == "ok"
    yield host
    FAULT["at"] = ""


def _config(tiny_config_on: Any, host: PluginHost, core_model: bool = False) -> Any:
    return tiny_config_on(host, model={"name": "tiny" if core_model else "faulty.gpt", "d_model": 32, "n_heads": 2,
                                       "n_layers": 1},
                          data={"name": "faulty.text"}, optimizer={"name": "faulty.sign", "weight_decay": 0.0},
                          lr_schedule={"name": "faulty.flat"},
                          train={"max_steps": 2, "warmup_steps": 0}, checkpoint={"interval": 1})


@pytest.mark.parametrize(("at", "component"), [
    ("check_data", "model faulty.gpt"), ("metric_names", "model faulty.gpt"),
    ("validation_batches", "dataset faulty.text"), ("count_tokens", "dataset faulty.text"),
    ("create", "optimizer faulty.sign"), ("step", "optimizer faulty.sign"), ("__init__", "lr_schedule faulty.flat"),
])
@pytest.mark.parametrize("core_model", [False, True])
def test_a_plugins_bug_is_one_line_naming_it(tiny_config_on: Any, host: PluginHost, tmp_path: Path, at: str,
                                             component: str, core_model: bool) -> None:
    if core_model and component.startswith("model"):
        pytest.skip("the model's own calls need the plugin's model")
    config = _config(tiny_config_on, host, core_model)
    FAULT["at"] = at
    with pytest.raises(PluginError) as raised:
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    kind, name = component.split()
    # one wording for every kind: the model's label was the engine's own ("model faulty.gpt (deepseek-faulty 0.1)"),
    # the dataset's and the others' their registration's, quoted and naming the registering module
    assert str(raised.value) == (f"{kind} '{name}' (deepseek-faulty 0.1, registered by {Plugin.__module__}): {at} "
                                 f"raised KeyError: 'bug in {at}'; a bug in the plugin: upgrade it or report it to its "
                                 "authors (its __cause__ holds the original traceback)")


@pytest.mark.parametrize(("at", "what"), [
    ("ragged training", "training batch of step 1: every tensor of a batch needs the rows along its first dimension, "
                        "and the same number of them; got first dimensions [7, 8]"),
    ("ragged validation", "validation batch: every tensor of a batch needs the rows along its first dimension, and "
                          "the same number of them; got first dimensions [7, 8]"),
    ("short training", "gave a training batch of step 1 of 7 rows, but data.batch_size is 8; a dataset yields global "
                       "batches of data.batch_size rows (docs/plugins.md, 'Datasets')"),
])
def test_a_plugin_datasets_misshapen_batch_is_its_bug_not_the_users(tiny_config_on: Any, host: PluginHost,
                                                                     tmp_path: Path, at: str, what: str) -> None:
    """A registered dataset's batch whose tensors disagree on their rows, or of other rows than
    data.batch_size, was the user's UsageError (exit 2: 'data: dataset ...'), though nothing in
    the user's config made it; it is the plugin's PluginError (exit 1) naming it and its
    distribution. deepseek.fit's own data stays the user's: test_short_validation_batch.py."""
    config = _config(tiny_config_on, host, core_model=True)
    assert config.data.batch_size == 8
    FAULT["at"] = at
    with pytest.raises(PluginError) as raised:
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert str(raised.value) == (f"dataset 'faulty.text' (deepseek-faulty 0.1, registered by {Plugin.__module__}): "
                                 f"{what}; a bug in the plugin: upgrade it or report it to its authors")


def test_a_datasets_load_state_dict_bug_on_resume_names_it(tiny_config_on: Any, host: PluginHost,
                                                           tmp_path: Path) -> None:
    config = _config(tiny_config_on, host)
    Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    FAULT["at"] = "load_state_dict"
    more = _config(tiny_config_on, host)
    more = dataclasses.replace(more, train=dataclasses.replace(more.train, max_steps=3))
    with pytest.raises(PluginError, match=r"^dataset 'faulty\.text' \(deepseek-faulty 0\.1, registered by \w+\): "
                       r"load_state_dict raised "
                       r"KeyError: 'bug in load_state_dict'; a bug in the plugin"):
        Trainer(more, resume=tmp_path / "run", quiet=True, host=host).fit()


@pytest.mark.parametrize(("owner", "call"), [("Cosine", "__init__"), ("LRSchedule", "lr_at"),
                                           ("LRSchedule", "state_dict"), ("AdamW", "__init__")])
def test_a_bug_in_cores_own_schedule_or_optimizer_is_not_blamed_on_a_plugin(
        tiny_config_on: Any, host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str,
        call: str) -> None:
    """Core's schedules carried their registration's label into every call: a bug of core's
    ``cosine`` read "a bug in the plugin: upgrade it or report it to its authors", and so did one in
    the ``__init__`` of core's optimizer builder (``adamw``). They pass as they are, their
    traceback with them, as core's models' and strategies' do."""
    from deepseek.training import optimizers, schedule

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError(f"core's {owner}.{call}")

    # a fault of core's own code: a method core's cosine (its own, or LRSchedule's) or adamw runs raises
    monkeypatch.setattr(getattr(optimizers if owner == "AdamW" else schedule, owner), call, broken)
    config = tiny_config_on(host, model={"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1},
                            train={"max_steps": 1, "warmup_steps": 0}, checkpoint={"interval": 1})
    assert (config.lr_schedule.name, config.optimizer.name) == ("cosine", "adamw")
    with pytest.raises(ZeroDivisionError, match=f"^core's {owner}.{call}$"):
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()


CORE_DATASET_CALLS = ["__init__", "text_codec", "validation_batches", "count_tokens", "predicted_text", "__next__",
                      "epochs_done", "state_dict", "close", "load_state_dict"]


@pytest.mark.parametrize("call", CORE_DATASET_CALLS)
def test_a_bug_in_cores_own_dataset_is_not_blamed_on_a_plugin(tiny_config_on: Any, host: PluginHost, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    """Core's datasets carried their registration's label into every call, which blamed what it
    names: a bug of core's ``text`` read "dataset 'text' (deepseek-core ...): __next__ raised ...;
    a bug in the plugin". The label still names them in the contract checks' messages; what their
    code raises passes as it is, its traceback with it, as core's schedules' do."""
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError(f"core's TextDataset.{call}")

    monkeypatch.setattr(TextDataset, call, classmethod(broken) if call == "text_codec" else broken)
    # load_state_dict: validation off, the model is checked on a training batch drawn and put back
    config = tiny_config_on(host, model={"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1},
                            data={"eval_batches": 0 if call == "load_state_dict" else 2},
                            train={"max_steps": 1, "warmup_steps": 0}, checkpoint={"interval": 1})
    assert config.data.name == "text"
    with pytest.raises(ZeroDivisionError, match=rf"^core's TextDataset\.{call}$"):
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()


def test_a_bug_in_cores_own_dataset_is_cores_internal_error_line(
        deepseek_here: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any) -> Any:
        raise ZeroDivisionError("core's TextDataset.__next__")

    monkeypatch.setattr(TextDataset, "__next__", broken)
    (tmp_path / "c.toml").write_text('[model]\nname = "tiny"\nd_model = 32\nn_heads = 2\nn_layers = 1\n'
                                     'max_seq_len = 32\n[data]\nbatch_size = 8\nseq_len = 32\neval_batches = 1\n'
                                     '[train]\nmax_steps = 1\n[strategy]\ndevice = "cpu"\n')
    proc = deepseek_here("train", "c.toml", "--run-dir", "r", "--quiet", cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (
        1, ["internal error: ZeroDivisionError: core's TextDataset.__next__ (run with --debug for the traceback)"])


def test_a_plugin_dataset_whose_inherited_core_code_fails_is_not_blamed(
        tiny_config_on: Any, host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's ``faulty.text`` subclasses core's ``text``: a fault in core's code it inherits,
    with no frame of the plugin's own, is core's bug, not the plugin's (blamed only by package).
    The fault: a builtin that refuses the batch (a function of this module would be the plugin's
    code, which it shares)."""
    import math

    monkeypatch.setattr(TextDataset, "predicted_text", staticmethod(math.log))
    with pytest.raises(TypeError, match="must be real number"):
        Trainer(_config(tiny_config_on, host), run_dir=tmp_path / "run", quiet=True, host=host).fit()


@pytest.mark.parametrize("owner", ["GPT", "TensorBoardTracker"])
def test_a_bug_in_cores_own_model_or_tracker_init_is_not_blamed_on_a_plugin(
        tiny_config_on: Any, host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str) -> None:
    """Core's models (``tiny``: a GPT) and trackers were created in a block blaming their label
    with no package filter: a bug in their ``__init__`` read "model 'tiny' (deepseek-core ...):
    __init__ raised ...; a bug in the plugin"."""
    from deepseek.tracking.tensorboard_tracker import TensorBoardTracker

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError(f"core's {owner}.__init__")

    cls = GPT if owner == "GPT" else TensorBoardTracker
    monkeypatch.setattr(cls, "__init__", broken)
    monkeypatch.setattr(TensorBoardTracker, "check", classmethod(lambda cls, options: None))  # no library needed
    config = tiny_config_on(host, model={"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1},
                            train={"max_steps": 1, "warmup_steps": 0}, logging={"trackers": ["tensorboard"]})
    with pytest.raises(ZeroDivisionError, match=rf"^core's {owner}\.__init__$"):
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
