"""``deepseek.evaluate(checkpoint=RUN)``: a registered model's run scored on its own validation data
from Python, by the function ``deepseek eval`` runs (:func:`deepseek.training.run_eval.evaluate_run`),
so the values are the command's ``--json`` values, ``val_perplexity`` and ``val_bits_per_byte``
included. Before, Python had no way to get them but ``main(["eval", ...])`` and parsing its output."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import pytest
import torch
from hostile_cli import invoke

import deepseek
from deepseek.errors import CheckpointError, UsageError
from deepseek.plugins.host import PluginHost


def command_values(run: Path, host: PluginHost, *more: str) -> dict[str, float]:
    out = invoke(["eval", "--checkpoint", str(run), "--json", "--device", "cpu", *more], host)
    assert out.code == 0, out.stderr
    return {k: v for k, v in json.loads(out.stdout).items() if k.startswith("val_")}


def test_the_values_are_the_commands(trained_run: Path, core_host: PluginHost) -> None:
    values = deepseek.evaluate(checkpoint=trained_run, host=core_host)
    assert values == command_values(trained_run, core_host)             # the same floats, bit for bit
    assert set(values) == {"val_loss", "val_perplexity", "val_bits_per_byte"}   # text data: tokens and bytes
    assert values["val_perplexity"] == pytest.approx(torch.tensor(values["val_loss"]).exp().item(), rel=1e-6)


def test_batches_caps_the_validation_batches_as_the_commands_option(trained_run: Path, core_host: PluginHost) -> None:
    three = deepseek.evaluate(checkpoint=str(trained_run), batches=3, host=core_host)
    assert three == command_values(trained_run, core_host, "--batches", "3")
    assert three != deepseek.evaluate(checkpoint=trained_run, host=core_host)   # data.eval_batches = 1 by default


def test_dtype_is_the_commands_dtype(trained_run: Path, core_host: PluginHost) -> None:
    from deepseek.cli.train_cmd import DTYPE_OPTION
    from deepseek.dtypes import DTYPE_NAMES

    bf16 = deepseek.evaluate(checkpoint=trained_run, dtype="bf16", host=core_host)
    assert bf16 == command_values(trained_run, core_host, "--dtype", "bf16")
    assert bf16 != deepseek.evaluate(checkpoint=trained_run, host=core_host)   # the weights in bf16: other values
    assert deepseek.evaluate(checkpoint=trained_run, dtype="fp32", host=core_host) == command_values(trained_run,
                                                                                                     core_host)

    @DTYPE_OPTION
    def options(dtype: str) -> None: ...
    assert tuple(options.__click_params__[0].type.choices) == tuple(DTYPE_NAMES)   # the same accepted values


def test_a_checkpoint_folder_and_exported_weights_evaluate_too(trained_run: Path, core_host: PluginHost,
                                                               tmp_path: Path) -> None:
    from deepseek.training.checkpoint import export_weights

    run = deepseek.evaluate(checkpoint=trained_run, host=core_host)
    assert deepseek.evaluate(checkpoint=trained_run / "checkpoints" / "step-1", host=core_host) == run
    folder = tmp_path / "weights"   # exported weights with the run's config beside them (its [data])
    folder.mkdir()
    export_weights(trained_run, folder / "model.safetensors")
    shutil.copyfile(trained_run / "config.toml", folder / "config.toml")
    assert deepseek.evaluate(checkpoint=folder / "model.safetensors", host=core_host) == run
    assert command_values(folder / "model.safetensors", core_host) == run


@pytest.mark.parametrize(("kwargs", "line"), [
    ({}, "checkpoint: missing; pass checkpoint= a run folder to score its model on its own validation data, or "
         "model and data to score your model on your data"),
    ({"checkpoint": "RUN", "batch_size": 8}, "batch_size: applies to evaluate(model, data, ...) only; a run's own "
     "validation data is read as the run read it (its data.batch_size): leave it out, or pass model and data"),
    ({"checkpoint": "RUN", "names": ("x",)}, "names: applies to evaluate(model, data, ...) only"),
    ({"checkpoint": "RUN", "batches": 0}, "batches: must be a positive integer, got 0"),
    ({"checkpoint": "RUN", "batches": True}, "batches: must be a positive integer, got True"),
    ({"checkpoint": 3}, "checkpoint: expected a path (a str or pathlib.Path), got 3 (int)"),
    ({"checkpoint": "RUN", "device": 0}, "device: expected a device name such as 'cpu' or 'cuda:0', got 0 (int)"),
    ({"checkpoint": "RUN", "host": "core"}, "host: expected a deepseek.plugins.host.PluginHost or None, got 'core'"),
    ({"checkpoint": "RUN", "dtype": "float16"}, "dtype: expected one of 'fp32', 'bf16', 'fp16', got 'float16'"),
    ({"checkpoint": "RUN", "dtype": torch.bfloat16}, "dtype: expected one of 'fp32', 'bf16', 'fp16', got "
     "torch.bfloat16"),
    ({"model": torch.nn.Linear(2, 2), "data": [1, 2], "dtype": "bf16"}, "dtype: applies to evaluate(checkpoint=...) "
     "without model and data"),
    ({"model": torch.nn.Linear(2, 2)}, "data: missing; pass both model and data (your model scored on your held-out "
     "data), or neither with checkpoint= (a run's model on its own validation data), not model alone"),
    ({"data": [1, 2]}, "model: missing; pass both model and data"),
    ({"model": torch.nn.Linear(2, 2), "data": [1, 2], "host": "h"}, "host: applies with checkpoint= (the plugin host "
     "its weights are read on"),
    ({"model": torch.nn.Linear(2, 2), "data": [1, 2], "checkpoint": "RUN", "host": "h"}, "host: expected a "
     "deepseek.plugins.host.PluginHost or None, got 'h'"),
])
def test_wrong_arguments_are_one_line_naming_the_keyword(trained_run: Path, kwargs: dict, line: str) -> None:
    kwargs = {k: str(trained_run) if v == "RUN" else v for k, v in kwargs.items()}
    with pytest.raises(UsageError) as err:
        deepseek.evaluate(**kwargs)
    assert str(err.value).startswith(line) and "\n" not in str(err.value)


def test_a_run_whose_data_no_longer_loads_names_what_python_passes(trained_run: Path, core_host: PluginHost,
                                                                   tmp_path: Path) -> None:
    """The command names its --config / --set; Python the call that takes other data."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    step = run / "checkpoints" / "step-1"
    state = json.loads((step / "trainer.json").read_text())
    state["config"]["data"]["seq_len"] = "long"
    body = json.dumps(state).encode()
    (step / "trainer.json").write_bytes(body)
    commit = json.loads((step / "commit.json").read_text())  # its record follows: a complete checkpoint
    commit["files"]["trainer.json"], commit["crc32"]["trainer.json"] = len(body), f"{zlib.crc32(body):08x}"
    (step / "commit.json").write_text(json.dumps(commit))
    with pytest.raises(CheckpointError, match=r"\(the checkpoint's \[data\]\): .*; evaluate on other data with "
                                              r"deepseek\.evaluate\(model, data, checkpoint=\.\.\.\) "):
        deepseek.evaluate(checkpoint=run, host=core_host)
    out = invoke(["eval", "--checkpoint", str(run), "--device", "cpu"], core_host)
    assert out.code == 2 and out.stderr.rstrip().endswith("evaluate on other data with --config FILE or --set "
                                                          "data.KEY=VALUE"), out.stderr
