"""The declared types of an optimizer's hyper-parameters (``OptimizerBuilder.hyper_parameters``),
and which declaration a checkpoint's saved groups are held to: the optimizer its ``trainer.json``
names, ``COMMON`` where that is not installed or the file does not say. Pure checks, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepseek import hookimpl
from deepseek.errors import CheckpointError, PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.checkpoint_io import check_saved_groups
from deepseek.training.hyper_parameters import (
    COMMON,
    FLAG,
    PAIR,
    HyperParameter,
    saved_hyper_parameters,
)
from deepseek.training.optimizers import SGD, AdamW

CORE = PluginHost(PluginSettings(autoload=False))


class Untyped(AdamW):
    hyper_parameters = ("betas",)  # type: ignore[assignment]  # a plugin's declaration that is none


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.unimportable", "acme_module_not_installed_here:Opt")  # its import fails on this host
        register("acme.untyped", Untyped)


@pytest.mark.parametrize(("rule", "value", "problem"), [
    (PAIR, "x", "where 2 finite numbers belong"),
    (PAIR, [0.9], "where 2 finite numbers belong"),
    (PAIR, (0.9, float("inf")), "where 2 finite numbers belong"),
    (PAIR, (0.9, 0.95), None),
    (HyperParameter(non_negative=True), -1, "below 0"),
    (HyperParameter(), True, "where a finite number belongs"),
    (FLAG, 1, "where true or false belongs"),
    (HyperParameter("text", optional=True), None, None),
    (HyperParameter("numbers"), "ab", "where a list of finite numbers belongs"),
])
def test_a_declared_type_names_what_belongs(rule: HyperParameter, value: object, problem: str | None) -> None:
    assert rule.problem(value) == problem


def test_a_declaration_of_no_known_kind_fails_where_it_is_made() -> None:
    with pytest.raises(ValueError, match="HyperParameter kind 'pair': expected one of number, numbers, flag, text"):
        HyperParameter("pair")  # type: ignore[arg-type]


@pytest.mark.parametrize(("trainer", "declared"), [
    (None, COMMON),  # no trainer.json beside the groups: what every optimizer's groups hold
    ({"config": {}}, AdamW.hyper_parameters),  # the default optimizer
    ({"config": {"optimizer": {"name": "sgd"}}}, SGD.hyper_parameters),
    ({"config": {"optimizer": {"name": "acme.gone"}}}, COMMON),  # not installed here
])
def test_saved_groups_are_held_to_the_optimizer_their_checkpoint_names(tmp_path: Path, trainer: dict | None,
                                                                      declared: object) -> None:
    if trainer is not None:
        (tmp_path / "trainer.json").write_text(json.dumps(trainer))
    assert saved_hyper_parameters(tmp_path, CORE) == declared


def test_sgd_groups_of_another_type_are_one_line() -> None:
    group = {"params": ["w"], "lr": 0.1, "weight_decay": 0.0, "momentum": 0.9, "nesterov": "yes"}
    with pytest.raises(CheckpointError, match=r"^here: optimizer group 0 nesterov is 'yes', where true or false "
                                              r"belongs; the checkpoint is damaged"):
        check_saved_groups([group], "here", SGD.hyper_parameters)
    check_saved_groups([group], "here")  # COMMON: a string there is no number to check


def test_an_optimizer_plugin_that_cannot_be_loaded_leaves_its_groups_to_common(tmp_path: Path) -> None:
    """``checkpoint info`` and ``export`` read a checkpoint's groups without building its optimizer:
    a plugin registering it whose import fails here is read as one not installed (COMMON), not a
    PluginError that refused the weights (a resume meets that error where it builds the
    optimizer); a plugin's declaration that is not one stays its PluginError."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-optim", version="0.1").status == "ok"
    (tmp_path / "trainer.json").write_text(json.dumps({"config": {"optimizer": {"name": "acme.unimportable"}}}))
    assert saved_hyper_parameters(tmp_path, host) == COMMON
    (tmp_path / "trainer.json").write_text(json.dumps({"config": {"optimizer": {"name": "acme.untyped"}}}))
    with pytest.raises(PluginError, match=r"acme\.untyped.*hyper_parameters is tuple, not a mapping of group keys"):
        saved_hyper_parameters(tmp_path, host)
