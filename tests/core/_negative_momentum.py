"""A plugin optimizer of negative momentum (and a small model beside it, :class:`Net`), registered
on a host the test builds, and a sharded checkpoint trained with it: for the tests that a sharded
checkpoint is read on the plugin host passed in. On that host the checkpoint's ``sharded.json``
groups (momentum -0.5) are held to :class:`NegativeMomentum`'s declaration (a signed number); on the
process's host, where the name is not installed, every optimizer's momentum is held >= 0 and the
groups read as damage (:data:`DAMAGED`).
Shared by tests/core/training/test_sharded_weights_host.py, tests/pro/test_export_checkpoint_host.py,
tests/pro/test_pipeline_merge_host.py and tests/enterprise/test_pretrained_host.py; pro's and
enterprise's load it by its path (``core_test_module`` of tests/pro/_prohelpers.py and
tests/enterprise/_core_tests.py: tests/core is not on their ``sys.path``).
examples/deepseek-plugin-tidy/tests/test_tidy_allreduce_host.py keeps its own copy: the example's
tests run with core and the plugin alone (its README), outside this repository's tests folder."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepseek import hookimpl
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_sharded import MODEL_DIR, OPTIMIZER_DIR, SHARDED_META
from deepseek.training.hyper_parameters import HyperParameter
from deepseek.training.optimizers import SGD

OPTIMIZER = "acme.negative_momentum"
"""The name :class:`NegativeMomentum` is registered under (distribution ``acme-optim`` 0.1)."""

MODEL = "acme.net"
"""The name :class:`Net` is registered under, beside it."""

DAMAGED = r"optimizer group 0 momentum is -0\.5, below 0"
"""What a read of :func:`write_sharded`'s checkpoint on the process's host is refused with."""


class NegativeMomentum(SGD):
    """An SGD of negative momentum: its groups' ``momentum`` declared a signed number, where
    every other optimizer's is held >= 0."""

    hyper_parameters = {**SGD.hyper_parameters, "momentum": HyperParameter()}


@dataclass(frozen=True)
class NetOptions:
    pass


class Net(nn.Module):
    """Two points' features to three classes' logits; its loss, the cross-entropy."""

    Options = NetOptions

    def __init__(self, options: NetOptions | None = None) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.layer(x), label)


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register(OPTIMIZER, NegativeMomentum)

    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register(MODEL, Net)


def registered(host: PluginHost | None = None) -> PluginHost:
    """``host`` (default: a new one that loads no installed plugin) with :class:`Plugin`
    registered as ``acme-optim`` 0.1 (a refusal fails the test here)."""
    host = host or PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-optim", version="0.1").status == "ok"
    return host


def write_sharded(out: Path, weights: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None) -> Path:
    """``out``: a sharded checkpoint of ``weights`` (step 1) as pro writes it, trained with
    :data:`OPTIMIZER` (one group of all the weights, momentum -0.5; no optimizer state yet:
    momentum SGD keeps none before its first step). Its ``trainer.json`` config is ``config``
    with the optimizer's name."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.save(dict(weights), storage_writer=HuggingFaceStorageWriter(str(out / MODEL_DIR), save_distributed=True),
                 no_dist=True)
    (out / OPTIMIZER_DIR).mkdir()
    group = {"params": sorted(weights), "lr": 0.1, "momentum": -0.5, "weight_decay": 0.0}
    (out / SHARDED_META).write_text(json.dumps({"param_groups": [group], "scalars": {}, "aliases": {}}))
    saved = {**(config or {}), "optimizer": {"name": OPTIMIZER}}
    ckpt.write_trainer_state(out, {"step": 1, "data": {}, "config": saved, "layout": "sharded"})
    return out
