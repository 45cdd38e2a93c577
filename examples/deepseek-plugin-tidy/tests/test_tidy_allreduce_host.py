"""``tidy.allreduce`` resumes a sharded checkpoint on the run's plugin host (``self.host``), its
weights as well as its optimizer state: ``ckpt.load_model_state(directory)`` checked the
checkpoint's ``sharded.json`` groups against the optimizer its ``trainer.json`` names as installed
in the process, so an optimizer registered only on the run's host (a signed momentum) was refused as
damage before ``load_optimizer_state(..., host=self.host)`` was reached. One gloo process, in this
process: ``load_checkpoint`` itself runs no collective."""

from __future__ import annotations

import json
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.build import optimizer_factory
from deepseek.training.checkpoint_sharded import MODEL_DIR, OPTIMIZER_DIR, SHARDED_META
from deepseek.training.hyper_parameters import HyperParameter
from deepseek.training.mixed_precision import Precision
from deepseek.training.optimizers import SGD
from deepseek.training.strategy import StepSettings

from deepseek_tidy.allreduce import AllReduceStrategy

WEIGHTS = {"weight": torch.arange(6.0).reshape(3, 2), "bias": torch.tensor([0.5, -1.0, 0.25])}


class NegativeMomentum(SGD):
    """An SGD of negative momentum: its groups' ``momentum`` declared a signed number."""

    hyper_parameters = {**SGD.hyper_parameters, "momentum": HyperParameter()}


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.negative_momentum", NegativeMomentum)


def _sharded(out: Path) -> Path:
    """A ``Linear(2, 3)``'s sharded checkpoint as pro writes it, trained with the plugin's optimizer
    (no optimizer state yet: momentum SGD keeps none before its first step)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.save(dict(WEIGHTS), storage_writer=HuggingFaceStorageWriter(str(out / MODEL_DIR), save_distributed=True),
                 no_dist=True)
    (out / OPTIMIZER_DIR).mkdir()
    group = {"params": sorted(WEIGHTS), "lr": 0.1, "momentum": -0.5, "weight_decay": 0.0}
    (out / SHARDED_META).write_text(json.dumps({"param_groups": [group], "scalars": {}, "aliases": {}}))
    config = {"optimizer": {"name": "acme.negative_momentum"}}
    ckpt.write_trainer_state(out, {"step": 1, "data": {}, "config": config, "layout": "sharded"})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_sharded_checkpoint_is_resumed_on_the_runs_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-optim", version="0.1").status == "ok"
    directory = _sharded(tmp_path / "step-1")
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    strategy = AllReduceStrategy({"backend": "gloo"}, precision=Precision("fp32"), host=host)
    strategy.setup_environment()
    try:
        # the live optimizer is the plugin's that wrote the checkpoint, over one group: a saved key the
        # live optimizer neither holds nor declares is refused on resume, and its declaration lets momentum be < 0
        factory = optimizer_factory(config_from_dict({"optimizer": {"name": "acme.negative_momentum"}}, host=host),
                                    host=host)
        strategy.place_for_training(torch.nn.Linear(2, 3), lambda named: factory([{"params": [p for _, p in named]}]),
                                    StepSettings())
        assert strategy.load_checkpoint(directory)["step"] == 1
        for name, value in WEIGHTS.items():
            assert torch.equal(strategy.model.state_dict()[name], value), name
        assert strategy.optimizer.param_groups[0]["momentum"] == -0.5   # the checkpoint's groups, restored
    finally:
        strategy.teardown()
    assert not dist.is_initialized()
