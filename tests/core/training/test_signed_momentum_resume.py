"""A plugin optimizer's declared hyper-parameters hold on resume: a run whose optimizer declares
its groups' ``momentum`` a number in [-1, 1] (here -0.5) resumes under ``single`` with the losses
of the run never stopped, where the read-back check used to hold ``momentum`` >= 0 whatever the
optimizer declares; a saved ``momentum`` outside the declared range is refused in one line."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek import hookimpl
from deepseek.errors import CheckpointError, ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.hyper_parameters import COMMON, HyperParameter
from deepseek.training.optimizer_state import StateValue
from deepseek.training.optimizers import OptimizerBuilder
from deepseek.training.trainer import Trainer

MOMENTUM = HyperParameter(minimum=-1, maximum=1)
"""The one rule of the momentum: the config's key and the saved groups' are both held to it."""


@dataclass(frozen=True)
class SignedOptions:
    signed_momentum: float = field(default=-0.5, metadata={"check": MOMENTUM.problem})


class _HeavyBall(torch.optim.Optimizer):
    """``buf = momentum * buf + grad; p -= lr * buf`` for any momentum (torch's SGD refuses < 0)."""

    def __init__(self, params: Any, lr: float, momentum: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = p.grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(p.grad)
                p.mul_(1 - group["lr"] * group["weight_decay"]).add_(state["momentum_buffer"], alpha=-group["lr"])


class Signed(OptimizerBuilder):
    Options = SignedOptions
    state_bytes = 4
    elementwise = True
    hyper_parameters = {**COMMON, "momentum": MOMENTUM}

    def create(self, groups: list[dict[str, Any]], lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        return _HeavyBall(groups, lr, self.options.signed_momentum)

    def state_spec(self, shape: tuple[int, ...]) -> dict[str, StateValue]:
        return {"momentum_buffer": StateValue(shape)}


class Plugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.signed", Signed)


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-signed", version="0.1").status == "ok"
    return host


def _with_saved_momentum(step: Path, value: float, root: Path, key: str = "momentum") -> Path:
    """``step`` committed anew under ``root`` with the ``key`` (``momentum``) of every group in its
    ``optimizer.safetensors`` metadata set to ``value`` (the header rewritten, padded to its length;
    committed so its commit record's checksums hold: only the value is wrong)."""
    from deepseek.training import checkpoint as ckpt

    tmp = ckpt.new_temp_dir(root, 2)
    for f in step.iterdir():
        if f.name != "commit.json":
            (tmp / f.name).write_bytes(f.read_bytes())
    path = tmp / "optimizer.safetensors"
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    groups = json.loads(header["__metadata__"]["param_groups"])
    header["__metadata__"]["param_groups"] = json.dumps([{**g, key: value} for g in groups], sort_keys=True)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= size
    path.write_bytes(raw[:8] + text.ljust(size, b" ") + raw[8 + size:])
    return ckpt.commit_checkpoint(tmp, root / step.name)


def test_a_signed_momentum_resumes_and_one_outside_its_range_is_refused(host: PluginHost, tiny_config_on: Any,
                                                                        tmp_path: Path) -> None:
    config = tiny_config_on(host, optimizer={"name": "acme.signed"}, train={"max_steps": 4, "lr": 1e-2},
                            model={"d_model": 16, "n_layers": 1, "max_seq_len": 16},
                            data={"seq_len": 16, "batch_size": 2, "eval_batches": 1},
                            checkpoint={"interval": 2, "keep_last": 5})
    straight = Trainer(config, run_dir=tmp_path / "straight", quiet=True, host=host).fit()
    step2 = tmp_path / "straight" / "checkpoints" / "step-2"
    resumed = Trainer(config, run_dir=tmp_path / "resumed", quiet=True, host=host, resume=step2).fit()
    assert resumed.losses == straight.losses[2:]  # exact: the saved momentum -0.5 and its buffers restored

    edited = _with_saved_momentum(step2, -1.5, tmp_path / "edited" / "checkpoints")
    with pytest.raises(CheckpointError) as refused:
        Trainer(config, run_dir=tmp_path / "refused", quiet=True, host=host, resume=edited).fit()
    assert str(refused.value).startswith(f"{edited / 'optimizer.safetensors'}: optimizer group 0 momentum is -1.5, "
                                         "below -1; the checkpoint is damaged")
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    assert not (tmp_path / "refused").exists()
    with pytest.raises(ConfigError, match=r"^optimizer.signed_momentum: above 1"):  # the config, by the same rule
        tiny_config_on(host, optimizer={"name": "acme.signed", "signed_momentum": 1.5})


def test_declared_bounds() -> None:
    assert [MOMENTUM.problem(v) for v in (-1, 0.5, 1.0, -1.01, 2, float("nan"), True)] == [
        None, None, None, "below -1", "above 1", "where a finite number belongs", "where a finite number belongs"]
    assert HyperParameter("numbers", count=2, minimum=0, maximum=1).problem([0.9, 1.5]) == "above 1"
    for bad in ({"minimum": 1, "maximum": 0}, {"minimum": float("inf")}, {"kind": "flag", "maximum": 1}):
        with pytest.raises(ValueError, match="HyperParameter bounds"):
            HyperParameter(**bad)


def test_a_bound_below_0_with_non_negative_is_refused_and_bounds_print_exactly() -> None:
    for bad in ({"minimum": -1}, {"minimum": -1, "maximum": 1}, {"maximum": -0.5}):
        with pytest.raises(ValueError, match=r"^HyperParameter bounds .* with non_negative=True: a bound below 0 "
                                             r"contradicts it; drop non_negative, or give bounds >= 0$"):
            HyperParameter(non_negative=True, **bad)
    assert HyperParameter(non_negative=True, minimum=0.5).problem(0.25) == "below 0.5"  # a bound >= 0: kept
    long = HyperParameter(minimum=0.1234567, maximum=0.98765432)
    assert [long.problem(v) for v in (0.1234566, 0.98765433)] == ["below 0.1234567", "above 0.98765432"]


def test_a_saved_adafactor_group_outside_its_declaration_is_refused_on_resume(tiny_config: Any, tmp_path: Path) -> None:
    """``beta2_decay`` > 0 makes torch's second-moment decay ``1 - t ** beta2_decay`` negative from
    step 2, ``d`` < 1 clips every update below the RMS it is meant to allow; the config refuses
    either, and a checkpoint holding one is refused by the same declaration
    (``HyperParameter(maximum=0)``, ``HyperParameter(minimum=1)``), one line naming the file, group
    and key, nothing written."""
    small = {"model": {"d_model": 16, "n_layers": 1, "max_seq_len": 16},
             "data": {"seq_len": 16, "batch_size": 2, "eval_batches": 1}}
    config = tiny_config(optimizer={"name": "adafactor"}, train={"max_steps": 2}, checkpoint={"interval": 2}, **small)
    Trainer(config, run_dir=tmp_path / "run", quiet=True).fit()
    longer = tiny_config(optimizer={"name": "adafactor"}, train={"max_steps": 4}, checkpoint={"interval": 2}, **small)
    for key, bound in (("beta2_decay", "above 0"), ("d", "below 1")):
        edited = _with_saved_momentum(tmp_path / "run" / "checkpoints" / "step-2", 0.5,
                                      tmp_path / f"edited-{key}" / "checkpoints", key=key)
        with pytest.raises(CheckpointError) as refused:
            Trainer(longer, run_dir=tmp_path / "refused", quiet=True, resume=edited).fit()
        assert str(refused.value).startswith(f"{edited / 'optimizer.safetensors'}: optimizer group 0 {key} is 0.5, "
                                             f"{bound}; the checkpoint is damaged")
        assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
        assert not (tmp_path / "refused").exists()
