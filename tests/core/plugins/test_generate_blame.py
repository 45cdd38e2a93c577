"""``deepseek generate`` of a plugin's model whose own ``generate`` raises: one line naming the
model and its distribution, exit code 1, as training and ``deepseek eval`` blame it
(``inference.served_calls``), for a single prompt (``sample``) and for ``--prompts`` (``serve``);
a ``--stop`` string ending the decoding inside the model's loop is no bug of the model. In this
process, on the toy plugin's classifier given a ``generate`` (no process is started)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from plugin_testing import host_for
from test_model_dataset_plugins import DIST, TOY, register_one, toy_config

from deepseek.config.load import config_from_dict
from deepseek.training.trainer import Trainer


def _generating(bug: bool) -> Any:
    from deepseek_toyclf.model import BlobClassifier

    class Generating(BlobClassifier):
        """The toy classifier declaring ``generation``: byte 97 ('a') after the prompt, one per
        position, handed to ``on_token`` as core's loop hands them; ``bug``: an index past its table."""

        def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: Any = None,
                     generator: Any = None, on_token: Any = None, static: Any = None) -> torch.Tensor:
            for _ in range(max_new_tokens):
                column = torch.full((idx.size(0), 1), 97, dtype=torch.long)
                if bug:
                    column = column + torch.arange(3)[5]  # the model's own bug: an IndexError
                if on_token is not None:
                    on_token(column)
                idx = torch.cat([idx, column], dim=1)
            return idx

    return Generating


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """``(run folder, host with gen.mlp registered)``: the plain classifier trained 1 step, served
    by a host whose ``gen.mlp`` generates as the test asks (:func:`_generating`)."""
    monkeypatch.syspath_prepend(str(TOY))

    def host_with(bug: bool) -> Any:
        host = host_for(DIST)
        register_one(host, "model", "gen.mlp", _generating(bug), dist="deepseek-gen", description="an MLP that writes")
        return host

    host = host_with(False)
    config = config_from_dict(toy_config(tmp_path, model={"name": "gen.mlp", "dropout": 0.0},
                                         train={"max_steps": 1, "eval_interval": 1, "warmup_steps": 0}), host=host)
    Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    yield tmp_path / "run", host_with
    for name in [m for m in sys.modules if m.startswith("deepseek_toyclf")]:
        del sys.modules[name]


def _generate(host: Any, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from deepseek.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["generate", *args], host=host)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.parametrize("served", [False, True], ids=["prompt", "prompts-file"])
def test_a_plugin_models_bug_in_generate_is_its_line(trained: Any, tmp_path: Path, served: bool,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Was: "internal error: IndexError: index 5 is out of bounds ..." and its traceback."""
    run, host_with = trained
    (tmp_path / "prompts.txt").write_text("hi\n")
    given = ["--prompts", str(tmp_path / "prompts.txt")] if served else ["hi"]
    code, out, err = _generate(host_with(True), "--checkpoint", str(run), *given, "--max-new-tokens", "2",
                               "--device", "cpu", capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and out == "", (code, out, err)
    assert lines[0].startswith("error: model 'gen.mlp' (deepseek-gen 0.0.0, registered by "), err
    assert ": generate raised IndexError: index 5 is out of bounds" in lines[0] and "a bug in the plugin" in lines[0]


def test_a_stop_string_is_no_bug_of_the_model(trained: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """``--stop`` ends the decoding by raising inside the model's own loop: the sample ends there (checked every 8 tokens: 12 asked)."""
    run, host_with = trained
    code, out, err = _generate(host_with(False), "--checkpoint", str(run), "hi", "--max-new-tokens", "12",
                               "--stop", "aa", "--device", "cpu", capsys=capsys)
    assert (code, out) == (0, "hi\n"), (code, out, err)


def test_a_strategy_whose_setup_inference_takes_no_settings_is_named(trained: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """``setup_inference(model, settings)`` takes the settings since the served model's blame moved
    there; a plugin strategy overriding the one-argument form was core's "internal error: TypeError:
    ... takes 2 positional arguments but 3 were given". It is one line naming the strategy."""
    from deepseek import hookimpl
    from deepseek.training.single import SingleDeviceStrategy

    class OldServing(SingleDeviceStrategy):
        name = "gen.old"

        def setup_inference(self, model: Any) -> Any:  # type: ignore[override]
            return model.eval()

    run, host_with = trained
    host = host_with(False)
    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register: Any) -> None:
            register("gen.old", OldServing, description="serves with the one-argument setup_inference")

    host.register_plugin(Plugin(), dist="deepseek-genstrategy")
    code, out, err = _generate(host, "--checkpoint", str(run), "hi", "--max-new-tokens", "2", "--strategy", "gen.old",
                               "--device", "cpu", capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and out == "", (code, out, err)
    assert lines[0].startswith("error: strategy 'gen.old' (deepseek-genstrategy "), err
    assert "setup_inference(model) does not take (model, settings)" in lines[0], err


def _serving_strategy(host: Any, placed: Any, name: str = "gen.own") -> None:
    """Register strategy ``name``: ``single`` whose ``setup_inference`` is ``placed``."""
    from deepseek import hookimpl
    from deepseek.training.single import SingleDeviceStrategy

    own = type("OwnServing", (SingleDeviceStrategy,), {"name": name, "setup_inference": placed})

    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register: Any) -> None:
            register(name, own, description="serves with a setup_inference of its own")

    host.register_plugin(Plugin(), dist="deepseek-genstrategy")


def test_a_strategy_whose_setup_inference_keeps_no_settings_still_blames_the_model(
        trained: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A strategy's ``setup_inference`` that neither calls ``super()`` nor keeps ``self.settings``:
    core keeps the settings before calling it (``Strategy.place_for_inference``), so the served
    model's bug is still the model's line (was: the strategy's default settings blamed nothing,
    and the bug was core's "internal error: IndexError ..." with its traceback)."""
    run, host_with = trained
    host = host_with(True)
    _serving_strategy(host, lambda self, model, settings: model.to(self.device).eval())
    code, out, err = _generate(host, "--checkpoint", str(run), "hi", "--max-new-tokens", "2", "--strategy", "gen.own",
                               "--device", "cpu", capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and out == "", (code, out, err)
    assert lines[0].startswith("error: model 'gen.mlp' (deepseek-gen 0.0.0, registered by "), err
    assert ": generate raised IndexError: index 5 is out of bounds" in lines[0], err



def test_a_strategy_overriding_place_for_inference_is_named() -> None:
    """``place_for_inference`` is core's (it keeps the settings): a strategy overriding it is one
    line naming the strategy (``load_placed`` loads the class through ``load_checked``, which checks
    it, before the checkpoint loads)."""
    from deepseek.errors import PluginError
    from deepseek.training.single import SingleDeviceStrategy
    from deepseek.training.strategy_rules import check_core_calls

    class Placing(SingleDeviceStrategy):
        def place_for_inference(self, model: Any, settings: Any) -> Any:  # type: ignore[misc]
            return model.eval()

    assert check_core_calls(SingleDeviceStrategy, "strategy 'single'") is SingleDeviceStrategy
    with pytest.raises(PluginError, match=r"^strategy 'gen\.placing' \(deepseek-x 1\.0\): overrides place_for_inference, "
                       r"which core calls to keep the served model's settings before setup_inference; override "
                       r"setup_inference instead"):
        check_core_calls(Placing, "strategy 'gen.placing' (deepseek-x 1.0)")
