"""The weights of a sharded checkpoint (``deepseek.load_model``, ``generate``, ``eval``, a
``single`` resume) are read with its ``sharded.json`` checked as every reader checks it: the saved
groups held to the optimizer its ``trainer.json`` names, looked up on the plugin host passed in
(the command's or run's), not the process's."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from deepseek import hookimpl
from deepseek.errors import CheckpointError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_sharded import MODEL_DIR, OPTIMIZER_DIR, SHARDED_META
from deepseek.training.hyper_parameters import HyperParameter
from deepseek.training.optimizers import SGD


class NegativeMomentum(SGD):
    """An SGD of negative momentum: its groups' ``momentum`` declared a signed number, where
    every other optimizer's is held >= 0."""

    hyper_parameters = {**SGD.hyper_parameters, "momentum": HyperParameter()}


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.negative_momentum", NegativeMomentum)


def _sharded(out: Path) -> Path:
    """A one-tensor sharded checkpoint as pro writes it, trained with the plugin's optimizer."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.save({"w": torch.arange(4.0)}, storage_writer=HuggingFaceStorageWriter(str(out / MODEL_DIR),
                                                                                   save_distributed=True), no_dist=True)
    (out / OPTIMIZER_DIR).mkdir()
    group = {"params": ["w"], "lr": 0.1, "momentum": -0.5, "weight_decay": 0.0}
    (out / SHARDED_META).write_text(json.dumps({"param_groups": [group], "scalars": {}, "aliases": {}}))
    (out / ckpt.TRAINER_FILE).write_text(json.dumps({"config": {"optimizer": {"name": "acme.negative_momentum"}}}))
    return out


def test_sharded_weights_are_read_on_the_host_passed_in(tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-optim", version="0.1").status == "ok"
    directory = _sharded(tmp_path / "step-1")
    assert torch.equal(ckpt.load_model_state(directory, host)["w"], torch.arange(4.0))
    model = torch.nn.Module()
    model.register_buffer("w", torch.zeros(4))
    ckpt.load_into_model(model, directory, host)
    assert torch.equal(model.w, torch.arange(4.0))
    # on the process's host the name is not installed: momentum is held >= 0 there
    with pytest.raises(CheckpointError, match=r"optimizer group 0 momentum is -0.5, below 0"):
        ckpt.load_model_state(directory)
