"""The full layout's non-tensor optimizer state (``optimizer.safetensors``'s ``scalars``) read back
as it was kept, as ``sharded.json``'s is (test_sharded_scalars.py): it was written with plain
``json.dumps``, so a tuple came back a list (an optimizer adding a tuple to it failed on resume);
both layouts now write ``checkpoint_io.jsonable_tree`` and read ``from_jsonable_tree``. A file
written before keeps its plain lists; a ``scalars`` that is no map of names to maps is one line."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek import hookimpl
from deepseek.errors import CheckpointError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint_io import load_tensors, save_tensors
from deepseek.training.optimizers import OptimizerBuilder
from deepseek.training.trainer import Trainer


class _Windowed(torch.optim.Optimizer):
    """Sign descent scaled by the mean of the last two gradient norms, kept as a tuple."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                window = (state.get("window", ()) + (float(p.grad.norm()),))[-2:]  # a list here fails
                state["window"], state["seen"] = window, {"pair": (len(window), 1), "count": len(window)}
                p.add_(p.grad.sign(), alpha=-group["lr"] * (1.0 + sum(window) / len(window)))


class Windowed(OptimizerBuilder):
    state_bytes = 0

    def create(self, groups: Any, lr: float, *, master_weights: bool = False, accumulation: int = 1) -> Any:
        return _Windowed(groups, lr=lr)

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        return {}


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("scalars.windowed", Windowed, description="sign descent over a window of gradient norms")


def _optimizer() -> tuple[torch.nn.Module, _Windowed, list[str]]:
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    optimizer = _Windowed(module.parameters(), lr=0.1)
    for _ in range(3):
        module(torch.randn(4, 3)).sum().backward()
        optimizer.step()
    return module, optimizer, [name for name, _ in module.named_parameters()]


def test_full_layout_scalars_read_back_as_the_optimizer_kept_them(tmp_path: Path) -> None:
    module, optimizer, names = _optimizer()
    path = ckpt.save_optimizer_state(tmp_path / "optimizer.safetensors", optimizer, names)
    named = ckpt.load_optimizer_state(path)
    assert named["state"]["weight"] == optimizer.state[module.weight]
    assert type(named["state"]["weight"]["window"]) is tuple
    assert type(named["state"]["bias"]["seen"]["pair"]) is tuple
    fresh_module, _, _ = _optimizer()
    fresh = _Windowed(fresh_module.parameters(), lr=0.1)
    ckpt.load_optimizer_state(path, fresh, names)
    assert fresh.state[fresh_module.weight]["window"] == optimizer.state[module.weight]["window"]
    ckpt.save_optimizer_state(tmp_path / "again.safetensors", fresh, names)
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_a_file_written_before_keeps_its_plain_lists(tmp_path: Path) -> None:
    _, optimizer, names = _optimizer()
    path = ckpt.save_optimizer_state(tmp_path / "optimizer.safetensors", optimizer, names)
    tensors, meta = load_tensors(path, "optimizer state")
    old = {"weight": {"window": [0.5, math.inf], "seen": {"pair": [2, 1], "count": 2}}, "bias": {"window": [1.0]}}
    save_tensors(path, tensors, {**meta, "scalars": json.dumps(old)})  # as plain json.dumps wrote a tuple
    assert ckpt.load_optimizer_state(path)["state"]["weight"]["seen"] == {"pair": [2, 1], "count": 2}
    assert ckpt.load_optimizer_state(path)["state"]["bias"]["window"] == [1.0]


@pytest.mark.parametrize(("scalars", "words"), [
    ('[["weight", 1]]', "'scalars' is [['weight', 1]], not a map of names to objects"),
    ('{"weight": 5}', "'scalars' is {'weight': 5}, not a map of names to objects"),
])
def test_scalars_of_another_shape_are_one_line(tmp_path: Path, scalars: str, words: str) -> None:
    _, optimizer, names = _optimizer()
    path = ckpt.save_optimizer_state(tmp_path / "optimizer.safetensors", optimizer, names)
    tensors, meta = load_tensors(path, "optimizer state")
    save_tensors(path, tensors, {**meta, "scalars": scalars})
    with pytest.raises(CheckpointError) as caught:
        ckpt.load_optimizer_state(path)
    assert str(caught.value).startswith(f"{path}: optimizer metadata is missing or corrupt ({words}); ")


def test_a_resume_with_tuple_state_is_exact(tiny_config_on: Any, tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-scalars", version="0.1").status == "ok"
    config = tiny_config_on(host, optimizer={"name": "scalars.windowed", "weight_decay": 0.0},
                            train={"max_steps": 4, "warmup_steps": 0, "decay_steps": 4}, checkpoint={"interval": 2})
    Trainer(config, run_dir=tmp_path / "straight", quiet=True, host=host).fit()
    half = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=2))
    Trainer(half, run_dir=tmp_path / "resumed", quiet=True, host=host).fit()
    Trainer(config, resume=tmp_path / "resumed", quiet=True, host=host).fit()
    for name in (ckpt.MODEL_FILE, ckpt.OPTIMIZER_FILE):
        straight, resumed = (tmp_path / run / "checkpoints" / "step-4" / name for run in ("straight", "resumed"))
        assert resumed.read_bytes() == straight.read_bytes(), name
