"""``deepseek checkpoint export`` (``export_checkpoint(src, dst, host=...)``) reads a sharded
checkpoint on the command's host: its ``sharded.json`` groups held to the optimizer its
``trainer.json`` names as registered there, as the model check and the optimizer-state check that
follow already were, not on the process's host (where a plugin optimizer registered only in-process
is not installed, and its signed momentum read as damage)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from deepseek import hookimpl
from deepseek.errors import CheckpointError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_sharded import MODEL_DIR, OPTIMIZER_DIR, SHARDED_META
from deepseek.training.hyper_parameters import HyperParameter
from deepseek.training.optimizers import SGD
from deepseek_pro.checkpoint import export_checkpoint


class NegativeMomentum(SGD):
    """An SGD of negative momentum: its groups' ``momentum`` declared a signed number."""

    hyper_parameters = {**SGD.hyper_parameters, "momentum": HyperParameter()}


@dataclass(frozen=True)
class NetOptions:
    pass


class Net(nn.Module):
    Options = NetOptions

    def __init__(self, options: NetOptions | None = None) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 3)


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.negative_momentum", NegativeMomentum)

    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.net", Net)


WEIGHTS = {"layer.weight": torch.arange(6.0).reshape(3, 2), "layer.bias": torch.tensor([0.5, -1.0, 0.25])}


def _sharded(out: Path) -> Path:
    """A sharded checkpoint of ``Net`` as pro writes it, trained with the plugin's optimizer (no
    optimizer state yet: momentum SGD keeps none before its first step)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.save(dict(WEIGHTS), storage_writer=HuggingFaceStorageWriter(str(out / MODEL_DIR), save_distributed=True),
                 no_dist=True)
    (out / OPTIMIZER_DIR).mkdir()
    group = {"params": sorted(WEIGHTS), "lr": 0.1, "momentum": -0.5, "weight_decay": 0.0}
    (out / SHARDED_META).write_text(json.dumps({"param_groups": [group], "scalars": {}, "aliases": {}}))
    config = {"model": {"name": "acme.net"}, "optimizer": {"name": "acme.negative_momentum"}}
    ckpt.write_trainer_state(out, {"step": 1, "data": {}, "config": config, "layout": "sharded"})
    return out


def test_a_sharded_checkpoint_is_exported_on_the_host_passed_in(tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-optim", version="0.1").status == "ok"
    source = _sharded(tmp_path / "step-1")
    out = export_checkpoint(source, tmp_path / "exported", host=host)
    assert ckpt.layout_of(out) == "full"
    model, optim = ckpt.read_full_state(out, host)
    assert set(model) == set(WEIGHTS) and all(torch.equal(model[k], v) for k, v in WEIGHTS.items())
    assert optim["param_groups"][0]["momentum"] == -0.5
    with pytest.raises(CheckpointError, match=r"optimizer group 0 momentum is -0.5, below 0"):
        export_checkpoint(source, tmp_path / "other")   # the process's host: the name is not installed there
    assert not (tmp_path / "other").exists()
