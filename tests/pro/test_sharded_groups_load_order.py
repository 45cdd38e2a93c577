"""pro's sharded load (``load_checkpoint``'s DCP branch), in this process without a process group
(one rank, as test_declared_hyper_parameters_pro does): ``sharded.json``'s parameter groups read
back like user input (a key the optimizer neither has nor declares, a group without ``lr``), and
every check of the metadata and the shards' headers made before the first read into the live
module, so a refused checkpoint leaves a Python API caller's model and optimizer as they were."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek.config.load import config_from_dict
from deepseek.errors import CheckpointError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.build import optimizer_factory
from deepseek.training.checkpoint_sharded import OPTIMIZER_DIR, SHARDED_META
from deepseek.training.mixed_precision import Precision
from deepseek_pro.checkpoint import load_checkpoint, save_checkpoint
from deepseek_pro.strategies.ddp import DDPStrategy

DAMAGED = "; the checkpoint is damaged, use an earlier checkpoint of the run"


def _group0(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def tamper(meta: dict[str, Any]) -> None:
        edit(meta["param_groups"][0])
    return tamper


CASES = [
    # carried into the optimizer and saved again (exit 0)
    ("unknown key", _group0(lambda g: g.update(foo=1)),
     f"{OPTIMIZER_DIR}: optimizer group 0 holds 'foo', which this run's optimizer neither has nor declares" + DAMAGED),
    # taken from the live optimizer's group, silently
    ("no lr", _group0(lambda g: g.pop("lr")),
     f"{SHARDED_META}: optimizer group 0 has no 'lr' (every group holds lr and weight_decay)" + DAMAGED),
    # refused only once the weights had been read into the live module
    ("state stored twice", lambda meta: meta.update(scalars={"weight": {"step": "x"}}),
     f"{SHARDED_META}: optimizer state weight/step is stored twice, as a tensor and among the non-tensor values"),
]


@pytest.mark.parametrize(("what", "tamper", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_refused_sharded_checkpoint_leaves_the_model_and_optimizer_as_they_were(
        tmp_path: Path, what: str, tamper: Callable[[dict[str, Any]], None], words: str) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    strategy = DDPStrategy({}, precision=Precision("fp32"), host=host)
    torch.manual_seed(0)
    module = torch.nn.Linear(4, 3)
    optimizer = optimizer_factory(config_from_dict({}, host=host), host=host)(list(module.named_parameters()))
    module(torch.ones(2, 4)).sum().backward()
    optimizer.step()  # AdamW state (step, moments) to save
    directory = tmp_path / "step-1"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        save_checkpoint(strategy, module, optimizer, directory, {"step": 1, "data": {}, "config": {}}, sharded=True)
        meta = json.loads((directory / SHARDED_META).read_text())
        tamper(meta)
        (directory / SHARDED_META).write_text(json.dumps(meta))
        with torch.no_grad():  # the caller's model moved on since: a refused load must not touch it
            for p in module.parameters():
                p.fill_(7.0)
        before = {k: v.clone() for k, v in module.state_dict().items()}
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(strategy, module, optimizer, directory)
    line = str(refused.value)
    assert line.startswith(f"{directory}/{words}") and "\n" not in line, line
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items()), what
    assert [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups] == groups
