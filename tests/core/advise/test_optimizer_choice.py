"""``deepseek advise --optimizer NAME``: the optimizer column comes from the registered optimizer's
declared ``state_bytes`` (mixed precision: fp32 master 4 + state; fp32: the state), checked
against the tensors torch's SGD really keeps; a plugin's optimizer is used when named; an unknown
name and ``--master-weights`` with an optimizer that keeps no master weights are one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from deepseek import hookimpl
from deepseek.advise.estimate import STRATEGIES, StateBytes, TrainSetup, state_bytes
from deepseek.advise.report import AdviseInputs, advise, resolve_optimizer
from deepseek.config.schema import OptimizerConfig
from deepseek.errors import UsageError
from deepseek.models import GPT, GPTConfig
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.optimizers import OptimizerBuilder

SPEC = {s.key: s for s in STRATEGIES}
ONE_GPU = AdviseInputs(params=1e9, gpus=1, gpu_memory="80GiB", host_memory="512GiB")


class NoState(OptimizerBuilder):
    """An optimizer that keeps nothing per parameter (plain SGD would)."""

    state_bytes = 0
    elementwise = True

    def create(self, groups: list, lr: float, *, master_weights: bool = False,
               accumulation: int = 1) -> torch.optim.Optimizer:
        return torch.optim.SGD(groups, lr=lr, momentum=0.0)


class NoStatePlugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("advtest.nostate", NoState, description="no state per parameter")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(NoStatePlugin(), dist="deepseek-advtest").status == "ok"
    return host


def _rows(report: dict) -> dict[str, dict]:
    return {e["key"]: e for e in report["estimates"]}


def test_sgd_is_four_bytes_per_parameter_below_adamw_on_one_gpu(host: PluginHost) -> None:
    adamw = advise(ONE_GPU, host)
    sgd = advise(replace(ONE_GPU, optimizer="sgd"), host)
    p = adamw["model"]["n_params"]
    assert p == sgd["model"]["n_params"] == 1_000_000_000
    a, s = _rows(adamw)["single"], _rows(sgd)["single"]
    assert (a["optimizer"], s["optimizer"]) == (12 * p, 8 * p)
    assert a["optimizer"] - s["optimizer"] == 4 * p == 4_000_000_000
    assert a["total"] - s["total"] == 4 * p  # nothing else in the row depends on the optimizer
    assert (a["weights"], a["gradients"], a["activations"]) == (s["weights"], s["gradients"], s["activations"])
    assert s["bytes_per_param"] == {"weights": 2, "gradients": 4, "optimizer": 8}
    # The offloaded row keeps the state on the host: 4 B/param less there, not on the GPU.
    ao, so = _rows(adamw)["single+offload"], _rows(sgd)["single+offload"]
    assert (ao["optimizer"], so["optimizer"], ao["host"] - so["host"]) == (0, 0, 4 * p)
    assert sgd["optimizer"] == {"name": "sgd", "state_bytes": 4, "supports_master_weights": False,
                                "elementwise": True, "dtensor": True}
    assert adamw["optimizer"] == {"name": "adamw", "state_bytes": 8, "supports_master_weights": True,
                                  "elementwise": True, "dtensor": True}
    assert sgd["bytes_per_param_paper"] == {"weights": 2, "gradients": 2, "optimizer": 8}
    assert sgd["setup"]["optimizer"] == "sgd" and sgd["setup"]["optimizer_state_bytes"] == 4


def test_deepspeed_rows_keep_their_master_beside_the_client_state(host: PluginHost) -> None:
    four = replace(ONE_GPU, gpus=4)
    adamw, sgd = _rows(advise(four, host)), _rows(advise(replace(four, optimizer="sgd"), host))
    p = advise(four, host)["model"]["n_params"]
    for row in ("zero1", "zero2"):  # fp32 master 4 + state, sharded over 4 GPUs
        assert sgd[row]["bytes_per_param"] == {"weights": 2, "gradients": 2, "optimizer": 8}
        assert (adamw[row]["optimizer"], sgd[row]["optimizer"]) == (12 * p // 4, 8 * p // 4)


def test_rows_whose_engine_flattens_or_shards_parameters_are_not_offered_to_adafactor(host: PluginHost) -> None:
    """DeepSpeed ZeRO-1/2 steps flat partitions of concatenated parameters, FSDP2 and tensor
    parallelism DTensor shards; the config refuses ``adafactor`` (it factors each matrix by its
    shape) under both, and the advisor does not offer those rows (the same rule: can_step)."""
    four = replace(ONE_GPU, params=3e9, gpus=4)
    adamw, adafactor = advise(four, host), advise(replace(four, optimizer="adafactor"), host)
    flat = ["single+offload", "zero1", "zero1+offload", "zero2", "zero2+offload"]
    sharded = ["zero3", "zero3+offload", "tp", "tp+sp"]
    assert [s.key for s in STRATEGIES if s.optimizer_parameters == "flat"] == flat
    assert [s.key for s in STRATEGIES if s.optimizer_parameters == "dtensor"] == sharded
    assert [e["key"] for e in adamw["estimates"] if not e["applicable"]] == ["ddp+offload"]  # offered by none
    refused = {e["key"] for e in adafactor["estimates"] if not e["applicable"]}
    assert refused == {"ddp+offload", *flat, *sharded}
    assert all(_rows(adafactor)[row]["fits"] for row in flat)  # they would fit; they cannot run
    assert adamw["recommendation"]["strategy"] == "zero1"  # the fastest that fits
    assert adafactor["recommendation"]["strategy"] not in [*flat, *sharded]
    assert adafactor["optimizer"]["elementwise"] is False and adafactor["optimizer"]["dtensor"] is False


def test_the_bytes_claimed_for_sgd_are_what_torch_keeps() -> None:
    """One step of the registered ``sgd`` (torch's SGD with momentum) over fp32 parameters: its
    state is one momentum buffer per parameter, the 4 B the estimate's fp32 row claims."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, d_model=32, n_heads=2, n_layers=2, max_seq_len=16))
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    cls = resolve_optimizer("sgd")
    opt = cls(cls.Options(), OptimizerConfig(momentum=0.9)).create([{"params": params, "weight_decay": 0.0}], 0.1)
    idx = torch.randint(0, 64, (2, 16))
    model(idx, idx).backward()
    opt.step()
    state = [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor)]
    measured = StateBytes(
        weights=sum(p.numel() * p.element_size() for p in params) / n,
        gradients=sum(p.grad.numel() * p.grad.element_size() for p in params) / n,
        optimizer=sum(t.numel() * t.element_size() for t in state) / n,
    )
    setup = TrainSetup(16, 2, "fp32", gpus=0, optimizer="sgd", optimizer_state_bytes=cls.state_bytes)
    assert measured == state_bytes(SPEC["single"], setup) == StateBytes(4, 4, 4)


def test_a_plugin_optimizer_is_used_when_named(host: PluginHost) -> None:
    report = advise(replace(ONE_GPU, optimizer="advtest.nostate"), host)
    assert report["optimizer"] == {"name": "advtest.nostate", "state_bytes": 0, "supports_master_weights": False,
                                   "elementwise": True, "dtensor": True}
    p = report["model"]["n_params"]
    single = _rows(report)["single"]
    assert single["bytes_per_param"] == {"weights": 2, "gradients": 4, "optimizer": 4}  # the fp32 master only
    assert single["optimizer"] == 4 * p
    cpu = _rows(advise(replace(ONE_GPU, gpus=0, gpu_memory="64GiB", optimizer="advtest.nostate"), host))
    assert cpu["single"]["bytes_per_param"] == {"weights": 4, "gradients": 4, "optimizer": 0}
    assert cpu["single"]["optimizer"] == 0


def test_what_the_host_lacks_or_cannot_run_is_refused(host: PluginHost) -> None:
    with pytest.raises(UsageError, match=r"^--optimizer: unknown optimizer 'advtest\.nostat'; did you mean "
                                         r"'advtest\.nostate'\?"):
        advise(replace(ONE_GPU, optimizer="advtest.nostat"), host)
    with pytest.raises(UsageError, match=r"^--master-weights: optimizer 'advtest\.nostate' does not keep fp32"):
        advise(replace(ONE_GPU, optimizer="advtest.nostate", master_weights=True), host)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", "advise", "--params", "1e9", "--gpu-memory", "80GiB",
                           "--gpus", "1", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "args,line",
    [
        (["--optimizer", "sdg"], "--optimizer: unknown optimizer 'sdg'; did you mean 'sgd'? available: "),
        (["--optimizer", "sgd", "--master-weights"],
         "--master-weights: optimizer 'sgd' does not keep fp32 master weights (only an optimizer declaring "
         "supports_master_weights does, e.g. 'adamw'); pass --optimizer adamw or leave out --master-weights"),
    ],
)
def test_cli_refusals_are_one_line_and_exit_code_2(args: list[str], line: str) -> None:
    out = _run(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith(f"error: {line}") and out.stderr.count("\n") == 1, out.stderr


def test_cli_names_the_optimizer_without_importing_torch() -> None:
    code = (
        "import sys\nfrom deepseek.cli.main import cli\n"
        "try:\n    cli.main(['advise', '--params', '1e9', '--gpus', '1', '--gpu-memory', '80GiB', '--optimizer', 'sgd',"
        " '--json'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().endswith("NO-TORCH")
    report = json.loads(out.stdout)
    assert report["optimizer"]["name"] == "sgd" and report["estimates"][0]["bytes_per_param"]["optimizer"] == 8
    table = _run("--optimizer", "sgd")
    assert table.returncode == 0, table.stderr
    assert "optimizer sgd (4 B state/param)" in table.stdout
    assert "optimizer 8 (fp32 master 4 + sgd state 4)" in table.stdout
