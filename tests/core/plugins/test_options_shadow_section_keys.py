"""A component's ``Options`` field named like a key of its config section itself (``name``, and
the keys every component of the kind shares: ``[optimizer] momentum``, ``[data] batch_size``) is
refused as the plugin's fault when a config names the component: the section keeps those keys, so
the config's value never reached the field. It was silently left at its default, and the run's
``config.toml`` recorded that default over the shared key's value (``momentum = 0.0`` for a run
that stepped with 0.9)."""

from __future__ import annotations

import pytest
from plugin_testing import DistFactory, host_for

from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError

PLUGIN = """
from dataclasses import dataclass

import torch

from deepseek import hookimpl
from deepseek.data.dataset import Dataset
from deepseek.training.optimizers import OptimizerBuilder


@dataclass(frozen=True)
class MomentumOptions:
    momentum: float = 0.0       # also [optimizer] momentum, which every optimizer shares


class Shadowing(OptimizerBuilder):
    Options = MomentumOptions

    def create(self, groups, lr, *, master_weights=False, accumulation=1):
        return torch.optim.SGD(groups, lr=lr, momentum=self.options.momentum)


class Reading(OptimizerBuilder):
    def create(self, groups, lr, *, master_weights=False, accumulation=1):
        return torch.optim.SGD(groups, lr=lr, momentum=self.config.momentum)


@dataclass(frozen=True)
class RowsOptions:
    batch_size: int = 4         # also [data] batch_size


class Rows(Dataset):
    Options = RowsOptions

    def __next__(self):
        return {"x": torch.zeros(self.batch_size, 2)}

    def validation_batches(self, limit):
        return []

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@hookimpl
def deepseek_register_optimizers(register):
    register("shadow.momentum", "shadowkeys:Shadowing")
    register("shadow.reads-config", "shadowkeys:Reading")


@hookimpl
def deepseek_register_datasets(register):
    register("shadow.rows", "shadowkeys:Rows")
"""


@pytest.fixture
def host(make_dist: DistFactory):
    make_dist("deepseek-shadowkeys", {"shadowkeys": PLUGIN}, entry_points={"shadowkeys": "shadowkeys"})
    host = host_for("deepseek-shadowkeys")
    assert host.records["deepseek-shadowkeys"].status == "ok", host.records["deepseek-shadowkeys"].reason
    return host


def test_an_optimizer_option_named_like_a_shared_key_is_refused(host) -> None:
    with pytest.raises(PluginError, match=r"^optimizer 'shadow\.momentum': its Options MomentumOptions field 'momentum' "
                       r"is the \[optimizer\] key optimizer\.momentum of the section itself, so a config's value never "
                       r"reaches the field; rename the field; an optimizer reads the keys every optimizer shares as "
                       r"self\.config\.momentum \(docs/plugins\.md section 14\)$"):
        config_from_dict({"optimizer": {"name": "shadow.momentum", "momentum": 0.9}}, host=host)


def test_a_dataset_option_named_like_a_data_key_is_refused(host) -> None:
    with pytest.raises(PluginError, match=r"^dataset 'shadow\.rows': its Options RowsOptions field 'batch_size' is the "
                       r"\[data\] key data\.batch_size of the section itself, .*; rename the field "
                       r"\(docs/plugins\.md section 11\)$"):
        config_from_dict({"data": {"name": "shadow.rows", "batch_size": 8}}, host=host)


def test_the_shared_key_reaches_the_optimizer_as_its_config(host) -> None:
    config = config_from_dict({"optimizer": {"name": "shadow.reads-config", "momentum": 0.9}}, host=host)
    assert config.optimizer.momentum == 0.9
    assert config.to_dict()["optimizer"]["momentum"] == 0.9
