"""A model refuses data through ``check_data`` before anything is written, by raising
``UsageError`` (the contract). A model that returns its refusal instead (or anything but ``None``)
answers outside the contract: its plugin's ``PluginError`` naming the model, its distribution and
``check_data`` (exit code 1), still before anything is written; it was the user's ``UsageError``
(the returned string as the message, exit code 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError, UsageError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.trainer import Trainer


class Picky(GPT):
    """A GPT whose check_data answers with whatever ``ANSWER`` holds (raises it, an exception)."""

    ANSWER: Any = None

    def __init__(self, options: GPTConfig) -> None:
        super().__init__(options)

    def check_data(self, batch: Any, dataset: Any) -> Any:
        if isinstance(type(self).ANSWER, Exception):
            raise type(self).ANSWER
        return type(self).ANSWER


class PickyPlugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("picky", Picky, description="a GPT with an opinion about data")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(PickyPlugin(), dist="deepseek-picky").status == "ok"
    return host


CONFIG = {"model": {"name": "picky", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16,
                    "vocab_size": 256},
          "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
          "train": {"max_steps": 2, "warmup_steps": 1, "eval_interval": 2},
          "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False}}


@pytest.mark.parametrize(("answer", "shown"), [
    ("data: this model wants spoken digits; set data.name = multimodal.digits",
     "'data: this model wants spoken digits; set data.name = multimodal.digits'"),
    (False, "False"),
])
def test_a_returned_refusal_is_the_models_bug_and_stops_the_run_before_anything_is_written(
        host: PluginHost, tmp_path: Path, answer: Any, shown: str) -> None:
    Picky.ANSWER = answer
    try:
        with pytest.raises(PluginError) as caught:
            Trainer(config_from_dict(CONFIG, host=host), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    finally:
        Picky.ANSWER = None
    assert str(caught.value) == (
        f"model 'picky' (deepseek-picky 0.0.0, registered by {__name__}): check_data returned {shown}; it must "
        "return None to accept the data or raise UsageError (one line) to refuse it (docs/plugins.md, 'Models'); "
        "a bug in the plugin: upgrade it or report it to its authors")
    assert not (tmp_path / "run").exists()


def test_a_raised_refusal_is_the_users_line(host: PluginHost, tmp_path: Path) -> None:
    Picky.ANSWER = UsageError("data: this model wants spoken digits; set data.name = multimodal.digits")
    try:
        with pytest.raises(UsageError) as caught:
            Trainer(config_from_dict(CONFIG, host=host), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    finally:
        Picky.ANSWER = None
    assert str(caught.value) == "data: this model wants spoken digits; set data.name = multimodal.digits"
    assert caught.value.exit_code == 2
    assert not (tmp_path / "run").exists()


def test_none_accepts_and_the_run_trains(host: PluginHost, tmp_path: Path) -> None:
    result = Trainer(config_from_dict(CONFIG, host=host), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert result.step == 2 and (tmp_path / "run" / "config.toml").is_file()



class FailsInTraining(GPT):
    """A GPT whose training forward refuses its batch from step ``AT`` on (evaluation passes)."""

    AT = 1
    calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training:
            type(self).calls += 1
            if type(self).calls >= type(self).AT:
                raise UsageError("data: a training batch this model refuses")
        return super().forward(*args, **kwargs)


class FailsPlugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("fails", FailsInTraining, description="a GPT that refuses training batches")


@pytest.mark.parametrize(("at", "kept"), [(1, False), (2, True)])
def test_a_fresh_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path: Path, at: int, kept: bool) -> None:
    """Failing in step 1 (after the step-0 evaluation, when config.toml and metrics exist), the
    folder the run made goes; failing later, the finished steps' metrics stay."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(FailsPlugin(), dist="deepseek-fails").status == "ok"
    FailsInTraining.AT, FailsInTraining.calls = at, 0
    config = config_from_dict({**CONFIG, "model": {**CONFIG["model"], "name": "fails"}}, host=host)
    with pytest.raises(UsageError, match="a training batch this model refuses"):
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert (tmp_path / "run").exists() is kept
    if kept:
        assert (tmp_path / "run" / "metrics.jsonl").read_text().count('"loss"') >= 1
    # a folder the user made is never removed, nor what it held
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    FailsInTraining.AT, FailsInTraining.calls = 1, 0
    with pytest.raises(UsageError):
        Trainer(config, run_dir=tmp_path / "mine", quiet=True, host=host).fit()
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
