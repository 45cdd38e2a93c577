"""pro's resume check (``_check_optimizer_fit``: ``ddp`` and ``fsdp`` resuming a full-layout
checkpoint) holds the saved groups to the hyper-parameters the live optimizer's builder declares:
a plugin optimizer's ``momentum`` declared in [-1, 1] resumes at -0.5 and is refused at -1.5; a key
it does not declare keeps the generic rule (``momentum`` >= 0 for an optimizer no builder made).
The sharded layout's load (``load_checkpoint``'s DCP branch) holds them to the same declaration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import CheckpointError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.build import optimizer_factory
from deepseek.training.hyper_parameters import COMMON, HyperParameter
from deepseek.training.optimizers import OptimizerBuilder
from deepseek_pro.checkpoint import _check_optimizer_fit


class _Momentum(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": -0.5, "weight_decay": 0.0})

    def step(self, closure: None = None) -> None:
        return None


class Signed(OptimizerBuilder):
    hyper_parameters = {**COMMON, "momentum": HyperParameter(minimum=-1, maximum=1)}

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        return _Momentum(groups, lr)


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.signed", Signed)


def _saved(optimizer: torch.optim.Optimizer, module: torch.nn.Module, momentum: float) -> dict[str, Any]:
    """The optimizer's state dict as a checkpoint holds it (by parameter name), ``momentum`` set."""
    names = {id(p): n for n, p in module.named_parameters()}
    return {"state": {}, "param_groups": [{**{k: v for k, v in g.items() if k != "params"}, "momentum": momentum,
                                           "params": [names[id(p)] for p in g["params"]]}
                                          for g in optimizer.param_groups]}


def test_pro_holds_saved_groups_to_the_live_optimizers_declaration(tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-signed", version="0.1").status == "ok"
    module = torch.nn.Linear(2, 3)
    config = config_from_dict({"optimizer": {"name": "acme.signed"}}, host=host)
    optimizer = optimizer_factory(config, host=host)(list(module.named_parameters()))
    where = tmp_path / "optimizer.safetensors"
    _check_optimizer_fit(_saved(optimizer, module, -0.5), optimizer, module, where)  # declared: resumes
    with pytest.raises(CheckpointError, match=rf"^{where}: optimizer group 0 momentum is -1.5, below -1; the "
                                              "checkpoint is damaged"):
        _check_optimizer_fit(_saved(optimizer, module, -1.5), optimizer, module, where)
    plain = _Momentum([{"params": list(module.parameters())}], 0.1)  # made by no builder: the generic rule
    with pytest.raises(CheckpointError, match=r"optimizer group 0 momentum is -0.5, below 0"):
        _check_optimizer_fit(_saved(plain, module, -0.5), plain, module, where)


class Lax(Signed):
    """Declares ``momentum`` any finite number: what a checkpoint's ``trainer.json`` may name."""

    hyper_parameters = {**COMMON, "momentum": HyperParameter()}


class Plugins(Plugin):
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.signed", Signed)
        register("acme.lax", Lax)


def test_pros_sharded_load_holds_saved_groups_to_the_live_optimizers_declaration(tmp_path: Path) -> None:
    """The sharded layout (DCP shards and ``sharded.json``), saved and loaded by pro's own
    functions in this process (no process group: one rank): a saved ``momentum`` of -0.5 loads into
    the plugin's optimizer declaring it in [-1, 1]; -1.5, which the checkpoint's own optimizer
    (``trainer.json``: ``acme.lax``, any number) lets the reader pass, is refused by the live
    optimizer's declaration, naming the optimizer folder, group and key, before any state is read."""
    import warnings

    from deepseek.training.checkpoint_sharded import OPTIMIZER_DIR, SHARDED_META
    from deepseek.training.mixed_precision import Precision
    from deepseek_pro.checkpoint import load_checkpoint, save_checkpoint
    from deepseek_pro.strategies.ddp import DDPStrategy

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugins(), dist="acme-signed", version="0.1").status == "ok"
    strategy = DDPStrategy({}, precision=Precision("fp32"), host=host)
    module = torch.nn.Linear(2, 3)
    config = config_from_dict({"optimizer": {"name": "acme.signed"}}, host=host)
    optimizer = optimizer_factory(config, host=host)(list(module.named_parameters()))
    directory = tmp_path / "step-1"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        save_checkpoint(strategy, module, optimizer, directory,
                        {"step": 1, "data": {}, "config": {"optimizer": {"name": "acme.lax"}}}, sharded=True)
        assert load_checkpoint(strategy, module, optimizer, directory)["step"] == 1
        assert optimizer.param_groups[0]["momentum"] == -0.5
        meta = json.loads((directory / SHARDED_META).read_text())
        meta["param_groups"][0]["momentum"] = -1.5
        (directory / SHARDED_META).write_text(json.dumps(meta))
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(strategy, module, optimizer, directory)
    assert str(refused.value).startswith(f"{directory / OPTIMIZER_DIR}: optimizer group 0 momentum is -1.5, below -1; "
                                         "the checkpoint is damaged")
    assert "\n" not in str(refused.value) and optimizer.param_groups[0]["momentum"] == -0.5
