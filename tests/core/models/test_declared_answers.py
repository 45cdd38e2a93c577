"""A model's declarations (``deepseek.models.declared``: ``not_trainable``,
``token_input_limits``, ``encoder_modules``, ``generation_vocab_size``) are the model's answers,
never the user's input: one against its contract is a plugin model's one-line ``PluginError``
naming its distribution, exit code 1, where the command reads it (was: a ``UsageError``, exit
code 2, as if the user's config were wrong); so is a declaration that raises. With nothing blamed
(core's own model, a script's) the ``BrokenAnswer`` passes as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek.config.components import NoOptions
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.graph.export_trained import example_tokens
from deepseek.models.declared import encoder_modules
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import (
    PLUGIN_BUG,
    BrokenAnswer,
    answer_error,
    blame_for,
    blamed_on,
    code_package,
)
from deepseek.plugins.host import PluginHost
from deepseek.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def label(name: str) -> str:
    return f"model 'acme.{name}' (deepseek-acme 0.1, registered by {__name__})"


class Declaring(TrainableModel):
    """A plugin's token model (``input_ids``, ``targets``) whose declarations are its class's."""

    Options = NoOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.head(self.embed(input_ids))
        if targets is None:
            return logits
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


class NotTrainableTrue(Declaring):
    not_trainable = True  # type: ignore[assignment]


class LimitsOfNoPair(Declaring):
    def token_input_limits(self):  # noqa: ANN201 - the broken answer under test
        return 256


class LimitsRaising(Declaring):
    def token_input_limits(self):  # noqa: ANN201
        raise ValueError("no limits here")


class EncodersOfNoMapping(Declaring):
    def encoder_modules(self):  # noqa: ANN201
        return [self.embed]


class EncodersOfNoEncoder(Declaring):
    def encoder_modules(self):  # noqa: ANN201
        return {"text": self.embed}


class Acme:
    @deepseek.hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("acme.nottrainable", NotTrainableTrue)


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost()
    assert host.register_plugin(Acme(), dist="deepseek-acme", version="0.1").status == "ok"
    return host


def test_training_a_plugin_model_whose_not_trainable_is_no_line_is_its_bug(host: PluginHost, tmp_path: Path) -> None:
    """The trainer reads ``not_trainable`` in the model's block: the plugin's line, before any
    run folder (was: "model NotTrainableTrue: not_trainable is True; ..." as a UsageError)."""
    config = config_from_dict({"model": {"name": "acme.nottrainable"}, "data": {"seq_len": 16, "batch_size": 2},
                               "train": {"max_steps": 1}, "strategy": {"device": "cpu"}}, host=host)
    run_dir = tmp_path / "run"
    with pytest.raises(PluginError) as raised:
        Trainer(config, run_dir=run_dir, host=host, quiet=True).fit()
    assert str(raised.value) == (f"{label('nottrainable')}: not_trainable is True; it must be None (the model "
                                 "trains) or one line saying why the model does not train (docs/plugins.md, "
                                 f"'Models'); {PLUGIN_BUG}")
    assert not run_dir.exists()


@pytest.mark.parametrize(("model", "what"), [
    (LimitsOfNoPair(), "token_input_limits() returned 256; it must return (ids, positions): the number of token ids "
                       "forward embeds (a positive int) and the most positions it takes (a positive int, or None for "
                       "no limit), or None when unknown"),
    (LimitsRaising(), "token_input_limits raised ValueError: no limits here"),
])
def test_token_limits_are_read_in_the_models_block(model: nn.Module, what: str) -> None:
    """``example_tokens`` (``deepseek export`` and ``optimize``, which pass ``served_calls``) reads
    them in the model's block: the plugin's line for a broken answer (was: a UsageError) and for
    one that raises (was: an internal error); given no block, the BrokenAnswer passes as it is."""
    calls = blame_for(label("limits"), code_package(model))
    with pytest.raises(PluginError) as raised:
        example_tokens(model, 2, 4, "cpu", name="acme.limits", command="export", calls=calls)
    assert str(raised.value).startswith(f"{label('limits')}: {what}; {PLUGIN_BUG}")
    if isinstance(model, LimitsOfNoPair):
        with pytest.raises(BrokenAnswer) as unblamed:
            example_tokens(model, 2, 4, "cpu", name="acme.limits", command="export")
        assert str(unblamed.value) == what


@pytest.mark.parametrize(("model", "got"), [(EncodersOfNoMapping(), "list"), (EncodersOfNoEncoder(), "'text': Embedding")])
def test_encoder_modules_that_are_no_mapping_of_encoders_are_the_models_bug(model: nn.Module, got: str) -> None:
    what = (f"encoder_modules() returned {got}; it must return a mapping of the [model] key holding each encoder's "
            "options to that Encoder (docs/plugins.md, 'Models')")
    with pytest.raises(PluginError) as raised:
        encoder_modules(model, calls=blame_for(label("enc"), code_package(model)))
    assert str(raised.value) == f"{label('enc')}: {what}; {PLUGIN_BUG}"
    with pytest.raises(BrokenAnswer) as unblamed:
        encoder_modules(model)
    assert str(unblamed.value) == what


def test_an_answer_blamed_on_nothing_is_blamed_on_no_component_around_it() -> None:
    """A script's or core's model is blamed on nothing (``blame_for(None, None)``): its broken
    answer passes a strategy's block around it as it is (was: that strategy's PluginError, as if
    its plugin answered wrong), and :func:`answer_error` gives it back unraised."""
    strategy = "strategy 'acme.s' (deepseek-acme 0.1, registered by acme.plugin)"
    with pytest.raises(BrokenAnswer), blamed_on(strategy, "train_step", package=__name__.partition(".")[0],
                                                raised_there=True):
        encoder_modules(EncodersOfNoMapping(), calls=blame_for(None, None))
    with pytest.raises(PluginError, match=r"^strategy 'acme\.s' .*: encoder_modules\(\) returned list"), \
            blamed_on(strategy, "train_step"):
        encoder_modules(EncodersOfNoMapping())  # no block of the model's: the answer is the strategy's
    model = EncodersOfNoMapping()
    made = answer_error(blame_for(label("enc"), code_package(model)), "pipeline_loss", "pipeline_loss returned 3")
    assert type(made) is PluginError and str(made) == f"{label('enc')}: pipeline_loss returned 3; {PLUGIN_BUG}"
    made = answer_error(blame_for(None, None), "pipeline_loss", "pipeline_loss returned 3")
    assert type(made) is BrokenAnswer and made.settled and str(made) == "pipeline_loss returned 3"
