"""The declared types of an optimizer's hyper-parameters (``OptimizerBuilder.hyper_parameters``),
and which declaration a checkpoint's saved groups are held to: the optimizer its ``trainer.json``
names, ``COMMON`` where that is not installed or the file does not say, looked up on the run's plugin
host. Pure checks, and one tiny run resumed."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.errors import CheckpointError, PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.checkpoint_io import check_saved_groups
from deepseek.training.hyper_parameters import (
    COMMON,
    FLAG,
    NON_NEGATIVE,
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


class Damped(SGD):
    """SGD whose groups keep a hyper-parameter of its own, declared never below 0 (an undeclared
    number is only held finite, and the live optimizer's value says no more)."""

    hyper_parameters = {**SGD.hyper_parameters, "acme_damping": NON_NEGATIVE}

    def create(self, groups: list[dict[str, Any]], lr: float, **kwargs: Any) -> Any:
        return super().create([{**g, "acme_damping": 0.5} for g in groups], lr, **kwargs)


class DampedPlugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.damped", Damped)


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


ADAMW_GROUP = {"params": ["w"], "lr": 2e-3, "initial_lr": 2e-3, "weight_decay": 0.1, "betas": [0.9, 0.95],
               "eps": 1e-8}


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("weight_decay", 1e300, "above 100.0"),  # optimizer.weight_decay's bound
    ("lr", 1e308, "above 10000.0"),  # train.lr's times an lr_scale's
    ("initial_lr", 1e308, "above 10000.0"),
    ("eps", 2.0, "above 1.0"),
    ("betas", [0.9, 1.0], "at or above 1"),  # a beta of 1 divides by 0 in the bias correction
    ("betas", [5.0, 0.95], "at or above 1"),
    ("betas", [-0.5, 0.95], "below 0"),
])
def test_saved_groups_are_held_to_the_configs_bounds(key: str, value: object, problem: str) -> None:
    group = {**ADAMW_GROUP, key: value}
    with pytest.raises(CheckpointError, match=rf"^here: optimizer group 0 {key} is {re.escape(repr(value))}, "
                                              rf"{re.escape(problem)}; the checkpoint is damaged"):
        check_saved_groups([group], "here", AdamW.hyper_parameters)
    if key in COMMON:  # an optimizer not installed here: what every optimizer's groups hold, bounded alike
        with pytest.raises(CheckpointError, match=re.escape(problem)):
            check_saved_groups([group], "here")


@pytest.mark.parametrize("key", ["lr", "weight_decay"])
def test_a_saved_group_without_lr_or_weight_decay_is_damage(key: str) -> None:
    """It was taken from the live optimizer's group, silently."""
    group = {k: v for k, v in ADAMW_GROUP.items() if k != key}
    for declared in (AdamW.hyper_parameters, COMMON):
        with pytest.raises(CheckpointError, match=rf"^here: optimizer group 0 has no '{key}' \(every group holds lr "
                                                  r"and weight_decay\); the checkpoint is damaged"):
            check_saved_groups([group], "here", declared)


def test_saved_groups_at_the_configs_bounds_are_taken() -> None:
    group = {**ADAMW_GROUP, "lr": 100.0 * 100.0, "weight_decay": 100.0, "eps": 1.0, "betas": [0.0, 0.999]}
    check_saved_groups([group], "here", AdamW.hyper_parameters)
    sgd = {"params": ["w"], "lr": 0.1, "weight_decay": 0.0, "momentum": 1.0, "nesterov": False}
    with pytest.raises(CheckpointError, match=r"momentum is 1\.0, at or above 1; "):
        check_saved_groups([sgd], "here", SGD.hyper_parameters)


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


def test_a_resume_holds_saved_groups_to_the_optimizer_on_the_runs_host(tiny_config_on: Any, tmp_path: Path) -> None:
    """A resume looks the checkpoint's optimizer up on the host its trainer runs on, not the
    process's, where ``acme.damped`` is not registered: its groups were held to COMMON there, and a
    negative ``acme_damping`` resumed."""
    from deepseek.training.checkpoint import load_optimizer_state
    from deepseek.training.checkpoint_io import load_tensors, save_tensors
    from deepseek.training.trainer import Trainer

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(DampedPlugin(), dist="acme-damped", version="0.1").status == "ok"
    run = tmp_path / "run"

    def config(steps: int) -> Any:
        return tiny_config_on(host, train={"max_steps": steps, "warmup_steps": 0}, optimizer={"name": "acme.damped"})

    Trainer(config(1), run_dir=run, quiet=True, host=host).fit()
    target = run / "checkpoints" / "step-1" / "optimizer.safetensors"
    tensors, meta = load_tensors(target, "optimizer state")
    groups = json.loads(meta["param_groups"])
    assert groups[0]["acme_damping"] == 0.5
    groups[0]["acme_damping"] = -1.0
    save_tensors(target, tensors, {**meta, "param_groups": json.dumps(groups)})
    record = json.loads((target.parent / "commit.json").read_text())  # the edit, sizes and checksums all
    record["files"][target.name] = target.stat().st_size
    record["crc32"][target.name] = f"{zlib.crc32(target.read_bytes()):08x}"
    (target.parent / "commit.json").write_text(json.dumps(record))
    words = r"optimizer\.safetensors: optimizer group 0 acme_damping is -1\.0, below 0"
    with pytest.raises(CheckpointError, match=words):
        Trainer(config(2), resume=target.parent, quiet=True, host=host).fit()
    assert not (run / "checkpoints" / "step-2").exists()
    with pytest.raises(CheckpointError, match=words):  # the strategies' load, on the host passed in
        load_optimizer_state(target.parent, host=host)
    assert load_optimizer_state(target.parent)["param_groups"][0]["acme_damping"] == -1.0  # the process's: COMMON
