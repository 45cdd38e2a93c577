"""``model.vocab_size`` against a plugin dataset's ``model_vocab_size`` (docs/plugins.md section 11):
a model that sets none follows the data, and one that sets a smaller size is refused in one line
naming the dataset, not a tokenizer the dataset does not have."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.data.dataset import Dataset
from deepseek.errors import ConfigError
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@dataclass(frozen=True)
class BagsOptions:
    vocab: int = 40


class Bags(Dataset):
    Options = BagsOptions

    def __next__(self) -> dict[str, torch.Tensor]:
        return {"tokens": torch.zeros(self.batch_size, 3, dtype=torch.long)}

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [next(self)][:limit]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def model_vocab_size(cls, options: BagsOptions) -> int:
        return options.vocab


@dataclass(frozen=True)
class PoolOptions:
    vocab_size: int = 8


class Pool(TrainableModel):
    Options = PoolOptions

    def __init__(self, options: PoolOptions) -> None:
        super().__init__()
        self.embed = nn.Embedding(options.vocab_size, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens).mean()


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("bag.pool", Pool, description="mean of token embeddings")

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("bag.bags", Bags, description="token bags of a declared vocabulary")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-bag").status == "ok"
    return host


def test_a_model_follows_the_datasets_vocabulary(host: PluginHost) -> None:
    config = config_from_dict({"model": {"name": "bag.pool"}, "data": {"name": "bag.bags", "vocab": 48}}, host=host)
    assert config.model.options.vocab_size == 48


def test_a_smaller_vocabulary_names_the_dataset_not_a_tokenizer(host: PluginHost) -> None:
    # an outside author's token-bag dataset (no tokenizer) was told "the tokenizer's vocabulary of 40
    # (data.tokenizer)", a key its data has not
    with pytest.raises(ConfigError) as refused:
        config_from_dict({"model": {"name": "bag.pool", "vocab_size": 32}, "data": {"name": "bag.bags"}}, host=host)
    assert str(refused.value) == (
        "model.vocab_size: 32 is smaller than the 40 token ids of dataset 'bag.bags' (its model_vocab_size; for 'text' "
        "and 'hf', data.tokenizer's vocabulary); remove model.vocab_size to follow the data, or set it >= 40")
