"""The optimizer contract (tests/contract/test_optimizers_contract.py) holds each optimizer to
its declarations at a second set of shared ``[optimizer]`` keys too (momentum, weight decay and the
first beta at 0, docs/plugins.md section 9): a momentum optimizer whose ``initial_state`` promises
a buffer its torch optimizer only keeps with momentum passed the contract at the defaults alone
(momentum 0.9), though DeepSpeed would allocate that state for a ``momentum = 0`` run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from plugin_testing import DistFactory

REPO = Path(__file__).resolve().parents[3]

OPTIM = """
import torch

from deepseek.training.optimizer_state import StateValue
from deepseek.training.optimizers import OptimizerBuilder


class HeavyBall(OptimizerBuilder):
    state_bytes = 4
    elementwise = True

    def create(self, groups, lr, *, master_weights=False, accumulation=1):
        return torch.optim.SGD(groups, lr=lr, momentum=self.config.momentum)

    def initial_state(self, param):
        return {"momentum_buffer": torch.zeros_like(param)}  # also at momentum 0, where torch keeps none

    def state_spec(self, shape):
        return {"momentum_buffer": StateValue(shape)}
"""

PLUGIN = """
from deepseek import hookimpl


@hookimpl
def deepseek_register_optimizers(register):
    register("acme.heavyball", "deepseek_acme.optim:HeavyBall", description="sgd with momentum")
"""


def test_a_declaration_wrong_only_without_momentum_fails_the_contract(make_dist: DistFactory, tmp_path: Path) -> None:
    make_dist("deepseek-acme", {"deepseek_acme.plugin": PLUGIN, "deepseek_acme.optim": OPTIM},
              entry_points={"acme": "deepseek_acme.plugin"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_optimizers_contract.py"), "-k", "deepseek-acme:"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_PLUGINS="deepseek-acme", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^FAILED \S+::(\S+)", out, re.M)
    assert failed == ["test_optimizer_contract[deepseek-acme:acme.heavyball-zeroed]"], out[-3000:]
    assert "acme.heavyball: initial_state keys" in out
    assert re.search(r"1 failed, (\d+) passed", out) and int(re.search(r"(\d+) passed", out).group(1)) >= 6, out[-500:]


AMSGRAD = """
from dataclasses import dataclass

import torch

from deepseek.training.optimizer_state import StateValue
from deepseek.training.optimizers import OptimizerBuilder


@dataclass(frozen=True)
class Options:
    amsgrad: bool = False


class MaybeAmsgrad(OptimizerBuilder):
    Options = Options
    state_bytes = 8
    elementwise = True

    def create(self, groups, lr, *, master_weights=False, accumulation=1):
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(self.config.betas), amsgrad=self.options.amsgrad)

    def initial_state(self, param):  # plain AdamW's: amsgrad's max_exp_avg_sq is left out
        return {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}

    def state_spec(self, shape):
        return {"step": StateValue(count=True), "exp_avg": StateValue(shape), "exp_avg_sq": StateValue(shape)}
"""


def test_a_declaration_wrong_only_at_an_own_option_fails_the_contract(make_dist: DistFactory, tmp_path: Path) -> None:
    """The contract sets an optimizer's own ``Options`` keys too (a bool flipped): an AdamW whose
    declarations leave out the state its own ``amsgrad = true`` keeps passed at the shared keys alone."""
    make_dist("deepseek-acme", {"deepseek_acme.plugin": PLUGIN.replace("acme.heavyball", "acme.amsgrad").replace(
        "deepseek_acme.optim:HeavyBall", "deepseek_acme.optim:MaybeAmsgrad"), "deepseek_acme.optim": AMSGRAD},
        entry_points={"acme": "deepseek_acme.plugin"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_optimizers_contract.py"), "-k", "deepseek-acme:"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_PLUGINS="deepseek-acme", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    failed = sorted(re.findall(r"^FAILED \S+::(\S+)", out, re.M))
    assert failed == [f"{test}[deepseek-acme:acme.amsgrad-{extra}own]" for test, extra in (
        ("test_optimizer_contract", ""), ("test_the_declared_state_bytes_cover_what_the_optimizer_keeps", ""),
        ("test_the_state_a_checkpoint_keeps_is_what_the_optimizer_declares", "fp32-"))], out[-3000:]
    assert "acme.amsgrad: initial_state keys" in out
