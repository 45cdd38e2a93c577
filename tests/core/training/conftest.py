"""Fixtures of the trainer tests: a very small GPT on the embedded corpus, on CPU, fp32."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

TINY: dict[str, Any] = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 2, "max_seq_len": 32},
    "data": {"seq_len": 32, "batch_size": 8, "eval_batches": 2, "shuffle_buffer": 64},
    "train": {"max_steps": 4, "warmup_steps": 2, "eval_interval": 0, "lr": 3e-3, "min_lr": 3e-4},
    "precision": {"dtype": "fp32"},
    "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 0, "keep_last": 2},
    "logging": {"progress": False, "plot": False},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested tables (``changes`` wins)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """These models are tiny: one intra-op thread is as fast, and far faster when other jobs
    share the cores (OpenMP threads then wait on each other at every op)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def core_host() -> PluginHost:
    """A plugin host with core's built-ins only, whatever else is installed."""
    return PluginHost(PluginSettings(autoload=False))


@pytest.fixture(scope="session")
def config_under(core_host: PluginHost) -> Callable[..., Any]:
    """``config_under(folder, train={"max_steps": 6}, ...)``: the tiny Config with its runs under
    ``folder``, validated with core's built-ins only (``core_host``)."""
    from deepseek.config.load import config_from_dict

    def make(folder: Path, **sections: dict[str, Any]) -> Any:
        data = merge(TINY, {"logging": {"runs_dir": str(folder / "runs")}})
        return config_from_dict(merge(data, sections), host=core_host)

    return make


@pytest.fixture
def tiny_config(tmp_path: Path, config_under: Callable[..., Any]) -> Callable[..., Any]:
    """``tiny_config(train={"max_steps": 6}, ...)``: :func:`config_under` ``tmp_path``."""
    return lambda **sections: config_under(tmp_path, **sections)


@pytest.fixture
def tiny_config_on(tmp_path: Path) -> Callable[..., Any]:
    """``tiny_config_on(host, train={...}, ...)``: the tiny Config validated on ``host`` (one
    that holds an in-process plugin), its runs under ``tmp_path``."""
    from deepseek.config.load import config_from_dict

    def make(host: PluginHost, **sections: dict[str, Any]) -> Any:
        data = merge(TINY, {"logging": {"runs_dir": str(tmp_path / "runs")}})
        return config_from_dict(merge(data, sections), host=host)

    return make
