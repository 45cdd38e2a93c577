"""``strategy.sync_batchnorm`` (ddp, fsdp): BatchNorm layers become ``torch.nn.SyncBatchNorm`` before
wrapping, so 2 processes of 8 rows each train as one device on the global batch of 16.

torch 2.11's SyncBatchNorm refuses CPU tensors in its forward, so on the CPU (gloo) the setting is
refused in one line when the config is loaded; here that refusal, the conversion itself, and that
without synchronisation 2 CPU processes do differ from one (the problem it solves) run on every
machine. The parity itself (2 CUDA processes with sync against one device, within the fp32
tolerance 1e-5 of docs/python-api.md, and without sync not) needs 2 GPUs and skips elsewhere."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from _prohelpers import deepseek_cli, run_torchrun
from _syncbn_fit import Normed, rows

import deepseek
from deepseek.config.ineffective import IneffectiveSettingWarning
from deepseek.errors import ConfigError
from deepseek_pro.strategies.ddp import DDPOptions, DDPStrategy
from deepseek_pro.strategies.fsdp import FSDPOptions
from deepseek_pro.strategies.sync_batchnorm import convert_batchnorm, sync_batchnorm_problem

PROBE = Path(__file__).with_name("_syncbn_fit.py")


def test_conversion_turns_every_batchnorm_and_keeps_parameters_and_names() -> None:
    torch.manual_seed(0)
    model = Normed()
    before = dict(model.named_parameters())
    keys = list(model.state_dict())
    converted = convert_batchnorm(model, DDPOptions(sync_batchnorm=True), warn=False)
    assert isinstance(converted.norm, torch.nn.SyncBatchNorm) and isinstance(converted.norm2, torch.nn.SyncBatchNorm)
    assert not any(type(m) in (torch.nn.BatchNorm1d,) for m in converted.modules())
    assert converted.norm2.momentum == 0.3
    # the same Parameter objects (the optimizer is built after) and the same state dict names
    assert all(p is before[n] for n, p in converted.named_parameters())
    assert list(converted.state_dict()) == keys
    # without a process group it normalises as BatchNorm does (nothing to synchronise)
    plain = Normed()
    plain.load_state_dict(converted.state_dict())
    x, y = rows(16, 0).tensors
    assert torch.equal(converted(x, y), plain(x, y))


def test_off_or_without_batchnorm_the_model_is_unchanged() -> None:
    model = Normed()
    assert convert_batchnorm(model, FSDPOptions(), warn=True) is model
    assert isinstance(model.norm, torch.nn.BatchNorm1d) and not isinstance(model.norm, torch.nn.SyncBatchNorm)
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.warns(IneffectiveSettingWarning, match="strategy.sync_batchnorm: the model .* has no BatchNorm"):
        assert convert_batchnorm(mlp, FSDPOptions(sync_batchnorm=True)) is mlp


@pytest.mark.parametrize(("backend", "cuda", "refused"), [
    ("auto", False, True), ("gloo", True, True), ("gloo", False, True), ("auto", True, False), ("nccl", True, False),
])
def test_the_cpu_rule(backend: str, cuda: bool, refused: bool) -> None:
    device = DDPStrategy.resolved_device_type(DDPOptions(backend=backend), cuda_available=cuda)
    problem = sync_batchnorm_problem(DDPOptions(sync_batchnorm=True, backend=backend), device_type=device)
    assert (problem is not None) == refused
    if refused:
        assert problem.startswith("strategy.sync_batchnorm: torch's SyncBatchNorm runs only on GPUs")
        assert "\n" not in problem
    assert sync_batchnorm_problem(DDPOptions(backend=backend), device_type=device) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a CPU run: this machine has CUDA")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero3"])
def test_a_cpu_run_is_refused_before_anything_runs(strategy: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strategy.sync_batchnorm: torch's SyncBatchNorm runs only on GPUs") as info:
        deepseek.fit(Normed, rows(64, 0), val_data=rows(32, 1), names=("features", "label"), batch_size=16,
                     strategy=strategy, config={"strategy": {"sync_batchnorm": True}}, run_dir=tmp_path / "run",
                     quiet=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a CPU run: this machine has CUDA")
def test_launch_refuses_it_in_one_line_with_exit_2(tmp_path: Path) -> None:
    refusal = "strategy.sync_batchnorm: torch's SyncBatchNorm runs only on GPUs"
    # a config: refused by the launcher before any process starts
    train = deepseek_cli("launch", "-n", "2", "--", "train", "--strategy", "ddp", "--set", "model.name=tiny",
                         "--set", "strategy.sync_batchnorm=true", "--max-steps", "2", "--run-dir", str(tmp_path / "t"))
    assert train.returncode == 2, train.stderr
    assert [line for line in train.stderr.splitlines() if line.strip()] == [
        next(line for line in train.stderr.splitlines() if refusal in line)]
    assert not (tmp_path / "t").exists()
    # a script: every rank's fit refuses it, and the launcher reports one line
    script = deepseek_cli("launch", "-n", "2", "--", "run", str(PROBE), str(tmp_path), "s", "ddp", "1", "cpu")
    assert script.returncode == 2, script.stderr
    assert refusal in script.stderr and "Traceback" not in script.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("strategy", ["pipeline", "deepspeed", "tp", "hybrid"])
def test_other_strategies_do_not_take_it(strategy: str) -> None:
    from deepseek.config.load import config_from_dict

    with pytest.raises(ConfigError) as info:
        config_from_dict({"strategy": {"name": strategy, "sync_batchnorm": True}})
    assert str(info.value).startswith(f"strategy.sync_batchnorm: unknown key for strategy '{strategy}'; strategy "
                                      "'ddp' or 'fsdp' or 'single'")


def _result(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_without_sync_two_cpu_processes_differ_from_one(tmp_path: Path) -> None:
    """What sync_batchnorm is for: each rank normalises its 8 rows, not the global 16."""
    from _syncbn_fit import main

    main(tmp_path, "single", "single", False, "cpu")
    run_torchrun([str(PROBE), str(tmp_path), "ddp", "ddp", "0", "cpu"], timeout=300)
    one, two = _result(tmp_path, "single"), _result(tmp_path, "ddp")
    assert len(one["losses"]) == len(two["losses"]) == 8
    gap = max(abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=True))
    assert gap > 1e-3, gap


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices: torch's SyncBatchNorm is GPU-only")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gpus_with_sync_train_as_one_device(strategy: str, tmp_path: Path) -> None:
    from _syncbn_fit import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IneffectiveSettingWarning)
        main(tmp_path, "single", "single", False, "cuda:0")
    run_torchrun([str(PROBE), str(tmp_path), "sync", strategy, "1", "cuda"], timeout=600)
    run_torchrun([str(PROBE), str(tmp_path), "plain", strategy, "0", "cuda"], timeout=600)
    one, sync, plain = (_result(tmp_path, n) for n in ("single", "sync", "plain"))
    assert sync["losses"] == pytest.approx(one["losses"], rel=1e-5, abs=1e-5)
    assert sync["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5, abs=1e-5)
    assert sync["running_mean"] == pytest.approx(one["running_mean"], rel=1e-5, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(plain["losses"], one["losses"], strict=True)) > 1e-3
