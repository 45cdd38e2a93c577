"""A checkpoint records which distribution provided each component its run used
(``trainer.json``'s ``components``); read back where that plugin is not available (uninstalled,
disabled), the error names the distribution and how to get it back instead of calling the
checkpoint edited or damaged. A damaged record is refused like any other field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _bigram import Bigram

from deepseek import hookimpl
from deepseek.cli.train_cmd import build_train_config
from deepseek.config.load import config_from_dict
from deepseek.errors import CheckpointError, ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.inference import load_trained
from deepseek.training.trainer import Trainer


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("zeta.bigram", Bigram, description="a bigram model from an outside distribution")


def _host(with_plugin: bool) -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    if with_plugin:
        assert host.register_plugin(Plugin(), dist="zeta-models", version="0.3.1").status == "ok"
    return host


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    host = _host(True)
    config = config_from_dict({
        "model": {"name": "zeta.bigram"},
        "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
        "train": {"max_steps": 2, "warmup_steps": 1, "eval_interval": 2},
        "checkpoint": {"interval": 1},
        "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False}}, host=host)
    return Trainer(config, run_dir=tmp_path_factory.mktemp("prov") / "run", quiet=True, host=host).fit().run_dir


def test_the_checkpoint_records_each_components_distribution(run: Path) -> None:
    state = json.loads((run / "checkpoints" / "step-2" / ckpt.TRAINER_FILE).read_text())
    entries = {(c["kind"], c["name"]): (c["distribution"], c["version"]) for c in state["components"]}
    assert entries[("model", "zeta.bigram")] == ("zeta-models", "0.3.1")
    assert entries[("dataset", "text")][0] == entries[("optimizer", "adamw")][0] == "deepseek-core"
    assert {k for k, _ in entries} == {"model", "dataset", "optimizer", "lr_schedule", "strategy"}
    model, _, _ = load_trained(run, host=_host(True))  # where the plugin is: loads
    assert isinstance(model, Bigram)


def test_reading_it_without_the_plugin_names_the_distribution(run: Path) -> None:
    with pytest.raises(CheckpointError) as caught:
        load_trained(run, host=_host(False))
    message = str(caught.value)
    assert "model.name: unknown model 'zeta.bigram'" in message
    assert message.endswith("the checkpoint was trained with model 'zeta.bigram' from zeta-models 0.3.1, which is "
                            "not available here; install or enable zeta-models (pip install zeta-models; "
                            "'deepseek plugins list' shows whether it is disabled)")
    assert "edited or is damaged" not in message and "\n" not in message


def test_resuming_it_without_the_plugin_names_the_distribution(run: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(the checkpoint's config, with this command's options\): model.name: "
                                          r"unknown model 'zeta.bigram'.*; the checkpoint was trained with model "
                                          r"'zeta.bigram' from zeta-models 0.3.1, which is not available here"):
        build_train_config(None, resume=str(run), host=_host(False))


def test_a_damaged_config_is_still_the_checkpoints_fault(run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    trainer = copy / "checkpoints" / "step-2" / ckpt.TRAINER_FILE
    state = json.loads(trainer.read_text())
    state["config"]["model"]["wdith"] = 3
    trainer.write_text(json.dumps(state))
    (trainer.parent / ckpt.COMMIT_FILE).unlink()  # its record of the file sizes
    with pytest.raises(CheckpointError, match=r"model.wdith: unknown key.*; if the file was edited or is damaged, "
                                              r"use another checkpoint$"):
        load_trained(copy / "checkpoints" / "step-2", host=_host(True))


@pytest.mark.parametrize("value", ["zeta", [{"kind": "model", "name": "x", "distribution": 3, "version": "1"}], [7]])
def test_a_damaged_record_is_refused_in_one_line(run: Path, tmp_path: Path, value: Any) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    trainer = copy / "checkpoints" / "step-2" / ckpt.TRAINER_FILE
    state = json.loads(trainer.read_text())
    state["components"] = value
    trainer.write_text(json.dumps(state))
    (trainer.parent / ckpt.COMMIT_FILE).unlink()  # its record of the file sizes
    with pytest.raises(CheckpointError, match=r"trainer.json: components is .* expected a list of objects"):
        load_trained(copy / "checkpoints" / "step-2", host=_host(True))


class Shadow:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("zeta.bigram", Bigram, description="the same name from a second distribution")


@pytest.mark.parametrize("with_config", [False, True])
def test_a_name_another_plugin_now_registers_resumes_with_the_recorded_one(run: Path, tmp_path: Path,
                                                                          with_config: bool) -> None:
    """A second distribution registering the run's model name: ``--resume RUN`` kept the recorded
    one, but ``deepseek train CONFIG --resume RUN`` (the requeue form) was refused as ambiguous."""
    host = _host(True)
    assert host.register_plugin(Shadow(), dist="zeta-shadow", version="1.0").status == "ok"
    config_file = None
    if with_config:
        config_file = str(tmp_path / "bigram.toml")
        Path(config_file).write_text((run / "config.toml").read_text(encoding="utf-8"), encoding="utf-8")
        with pytest.raises(ConfigError, match="registered by both"):  # a fresh run must choose
            build_train_config(config_file, (), host=host)
    config = build_train_config(config_file, (), resume=str(run), max_steps=3, host=host)
    assert "zeta-models" in config.plugins.prefer


class Shadow2(Shadow):
    pass


def _unrecorded_copy(run: Path, tmp_path: Path) -> Path:
    """The last checkpoint of a copy of ``run``, recording no components (written before them)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    trainer = copy / "checkpoints" / "step-2" / ckpt.TRAINER_FILE
    state = json.loads(trainer.read_text())
    del state["components"]
    trainer.write_text(json.dumps(state))
    (trainer.parent / ckpt.COMMIT_FILE).unlink()  # its record of the file sizes
    return trainer.parent


def test_an_ambiguous_model_name_is_not_called_damage(run: Path, tmp_path: Path) -> None:
    """The model's name registered by two installed distributions, the checkpoint not recording
    which one it was trained with: the line said 'if the file was edited or is damaged, use
    another checkpoint'; it names both and how to choose, and the choice it names loads it."""
    copy = _unrecorded_copy(run, tmp_path)
    host = _host(True)
    assert host.register_plugin(Shadow(), dist="zeta-shadow", version="1.0").status == "ok"
    how = ("the file is not damaged: the checkpoint does not record which one it was trained with; choose one with "
           "DEEPSEEK_PLUGIN_PREFER=<distribution> or leave the others out with --disable-plugins")
    with pytest.raises(CheckpointError) as caught:
        load_trained(copy, host=host)
    message = str(caught.value)
    assert "model.name: model 'zeta.bigram' is registered by both zeta-models 0.3.1" in message
    assert "zeta-shadow 1.0" in message and message.endswith(how)
    assert "edited or is damaged" not in message
    with pytest.raises(ConfigError) as caught:
        build_train_config(None, resume=str(copy), max_steps=3, host=host)
    assert str(caught.value).endswith(how) and "damaged, resume" not in str(caught.value)

    chosen = PluginHost(PluginSettings(autoload=False, prefer=("zeta-shadow",)))  # DEEPSEEK_PLUGIN_PREFER=zeta-shadow
    for plugin, dist, version in ((Plugin(), "zeta-models", "0.3.1"), (Shadow(), "zeta-shadow", "1.0")):
        assert chosen.register_plugin(plugin, dist=dist, version=version).status == "ok"
    assert isinstance(load_trained(copy, host=chosen)[0], Bigram)


def test_an_ambiguous_name_without_the_recorded_distribution_names_it(run: Path) -> None:
    host = _host(False)
    assert host.register_plugin(Shadow(), dist="zeta-shadow", version="1.0").status == "ok"
    assert host.register_plugin(Shadow2(), dist="zeta-other", version="2.0").status == "ok"
    with pytest.raises(CheckpointError) as caught:
        load_trained(run, host=host)
    assert str(caught.value).endswith(
        "the file is not damaged: the run was trained with the one from zeta-models 0.3.1, which is not among them; "
        "choose one with DEEPSEEK_PLUGIN_PREFER=<distribution> or leave the others out with --disable-plugins")


def test_a_strategy_an_edition_provides_is_named_once_with_the_single_fallback() -> None:
    """A pro (fsdp) run resumed where only core is installed: the lookup's line already says how
    to install deepseek-pro; the note added no second install advice, and names the fallback any
    strategy's checkpoint allows (was: two install commands, no --strategy single)."""
    from deepseek.errors import ComponentNotFoundError
    from deepseek.training.provenance import missing_component

    lookup = ComponentNotFoundError("strategy 'fsdp' is provided by deepseek-pro (pro (V2)), which is not installed; "
                                    "install it with: pip install deepseek-pro")
    exc = ConfigError(f"strategy.name: {lookup}")
    exc.__cause__ = lookup
    state = {"components": [{"kind": "strategy", "name": "fsdp", "distribution": "deepseek-pro", "version": "0.1.0"}]}
    note = missing_component(exc, state)
    assert note == ("the checkpoint was trained with strategy 'fsdp' from deepseek-pro 0.1.0; or resume it with a "
                    "strategy installed here (--strategy single)")
    lookup = ComponentNotFoundError("unknown strategy 'acme.ring'")  # a plugin's: how to get it back is the note's
    exc = ConfigError(f"strategy.name: {lookup}")
    exc.__cause__ = lookup
    state["components"][0].update(name="acme.ring", distribution="deepseek-acme")
    assert missing_component(exc, state) == (
        "the checkpoint was trained with strategy 'acme.ring' from deepseek-acme 0.1.0, which is not available here; "
        "install or enable deepseek-acme (pip install deepseek-acme; 'deepseek plugins list' shows whether it is "
        "disabled); or resume it with a strategy installed here (--strategy single)")


def test_a_bad_option_given_with_resume_is_the_options_fault_not_the_checkpoints(run: Path, tmp_path: Path) -> None:
    """`deepseek train --resume RUN --set train.grad_clip=-1` blamed the checkpoint's trainer.json
    ('... (the checkpoint's config, with this command's options): ...; if the file was edited or
    is damaged, resume from another checkpoint'), though only the option was wrong."""
    import shutil

    with pytest.raises(ConfigError) as caught:
        build_train_config(None, ("train.grad_clip=-1",), resume=str(run), host=_host(True))
    assert str(caught.value) == "train.grad_clip: must be >= 0, got -1 (int)"
    with pytest.raises(ConfigError, match=r"^lr_schedule.name: unknown lr_schedule 'cosin'"):
        build_train_config(None, ('lr_schedule.name="cosin"',), resume=str(run), host=_host(True))
    # a damaged saved config is still the checkpoint's, options or not
    import zlib

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for step in (copy / "checkpoints").glob("step-*"):
        trainer = step / ckpt.TRAINER_FILE
        state = json.loads(trainer.read_text())
        state["config"]["model"]["wdith"] = 3
        body = json.dumps(state).encode()
        trainer.write_bytes(body)
        commit = json.loads((step / ckpt.COMMIT_FILE).read_text())  # its record of sizes and checksums
        commit["crc32"][ckpt.TRAINER_FILE], commit["files"][ckpt.TRAINER_FILE] = f"{zlib.crc32(body):08x}", len(body)
        (step / ckpt.COMMIT_FILE).write_text(json.dumps(commit))
    with pytest.raises(ConfigError, match=r"\(the checkpoint's config, with this command's options\): model.wdith: "
                                          r"unknown key.*if the file was edited or is damaged"):
        build_train_config(None, ("train.grad_clip=0.5",), resume=str(copy), host=_host(True))
