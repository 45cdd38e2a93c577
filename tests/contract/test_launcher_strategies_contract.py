"""Contract of every third-party strategy that needs a launcher (``needs_launcher = True``):
under torchrun, 2 gloo processes on the CPU, 3 steps of a tiny GPT (dropout 0) give the loss and
gradient norm of ``single`` in one process at every step, within 1e-5.

A strategy whose ranks never combine their gradients (or their loss) trains each rank on its own
half of the batch and fails here, although it runs and exits 0. So does one whose ``reduce_sum``
(an evaluation's whole-set totals, docs/plugins.md section 10) is the base class's one-rank default:
its ``val_<metric>`` from ``metrics_from_totals`` would be one rank's rows only. The first-party distributions'
strategies are checked against ``single`` in tests/pro; this module takes every other
distribution's, and skips with the reason when none is installed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deepseek.config.components import load_checked
from deepseek.plugins.host import get_host

FIRST_PARTY = {"deepseek-core", "deepseek-pro", "deepseek-enterprise"}
STEPS = 3
TOML = f"""\
[model]
name = "tiny"
d_model = 32
n_heads = 2
n_layers = 2
max_seq_len = 32
dropout = 0.0

[data]
seq_len = 32
batch_size = 4
eval_batches = 1

[train]
max_steps = {STEPS}
warmup_steps = 1
eval_interval = 0
lr = 3e-3
seed = 11

[precision]
dtype = "fp32"

[checkpoint]
interval = 0
at_end = false

[logging]
progress = false
plot = false
"""


STRATEGIES = [c.qualified_name for c in get_host().components("strategy") if c.dist not in FIRST_PARTY]
"""``dist:name`` of every registered strategy outside the first-party editions. Whether one needs
the launcher is asked in its own test: it loads the strategy's target, and one that does not load
must fail its own test, not stop the whole suite from being collected."""


def _needs_launcher(name: str) -> bool:
    """The strategy's declared ``Strategy.needs_launcher``; a target that is no ``Strategy``
    subclass implementing every abstract method raises a ``PluginError`` naming it."""
    return load_checked("strategy", get_host().resolve("strategy", name)).needs_launcher


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(nproc: int) -> tuple[list[str], dict[str, str]]:
    """torchrun's arguments for ``nproc`` CPU processes, and their environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
            "--master-port", str(_free_port())], env


def _failure(what: str, proc: subprocess.CompletedProcess[str]) -> str:
    lines = (proc.stdout + proc.stderr).splitlines()
    tail = "\n".join(line for line in lines if not re.match(r"[WEI]\d{4} ", line))[-4000:]
    return f"{what} exited with {proc.returncode}:\n{tail}"


def _train(config: Path, run: Path, strategy: str, nproc: int) -> list[dict[str, Any]]:
    """``deepseek train`` (under torchrun with ``nproc`` > 1 processes) on the CPU; its step records."""
    launcher, env = _torchrun(nproc) if nproc > 1 else ([], _torchrun(1)[1])
    proc = subprocess.run([sys.executable, *launcher, "-m", "deepseek", "train", str(config), "--strategy", strategy,
                           "--run-dir", str(run)], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(_failure(f"{strategy} on {nproc} process(es)", proc))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted((r for r in rows if "loss" in r and "grad_norm" in r), key=lambda r: r["step"])


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    work = tmp_path_factory.mktemp("single")
    (work / "tiny.toml").write_text(TOML, encoding="utf-8")
    return _train(work / "tiny.toml", work / "run", "single", 1)


def test_a_third_party_launcher_strategy_is_installed() -> None:
    def needs_launcher(name: str) -> bool:
        try:
            return _needs_launcher(name)
        except Exception:  # noqa: BLE001 (a strategy that does not load fails its own test below)
            return False

    if not any(needs_launcher(n) for n in STRATEGIES):
        pytest.skip("no needs_launcher strategy from a distribution other than "
                    f"{', '.join(sorted(FIRST_PARTY))} is installed (first-party ones: tests/pro)")


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_two_processes_train_like_single(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if not _needs_launcher(name):
        pytest.skip(f"{name}: needs_launcher is not set (strategies in one process are checked in test_strategy_contract)")
    single: list[dict[str, Any]] = request.getfixturevalue("single")
    (tmp_path / "tiny.toml").write_text(TOML, encoding="utf-8")
    got = _train(tmp_path / "tiny.toml", tmp_path / "run", name, 2)
    assert [r["step"] for r in got] == [r["step"] for r in single] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm"):
        assert [r[key] for r in got] == pytest.approx([r[key] for r in single], abs=1e-5), (
            f"{name}: {key} on 2 processes differs from single's; do the ranks average their gradients "
            "(and the loss) over the data-parallel ranks?")


# Each rank sums its data-parallel rank + 1 (ranks that share rows pass the same number), as an
# evaluation sums its whole-set totals: over the data-parallel ranks that is 1 + ... + dp_size.
TOTALS = """
import json, pathlib, sys, torch, deepseek
strategy = deepseek.create_strategy(sys.argv[1], precision="fp32")
strategy.setup_environment()
try:
    mine = {"count": torch.tensor([float(strategy.dp_rank + 1)], device=strategy.device)}
    summed = strategy.reduce_sum(mine)["count"].item()
    row = {"rank": strategy.rank, "dp_size": strategy.dp_size, "sum": summed}
    pathlib.Path(sys.argv[2], f"rank-{strategy.rank}.json").write_text(json.dumps(row))
finally:
    strategy.teardown()
"""


@pytest.mark.parametrize("name", STRATEGIES, ids=STRATEGIES)
def test_two_processes_sum_whole_set_totals_over_the_ranks(name: str, tmp_path: Path) -> None:
    if not _needs_launcher(name):
        pytest.skip(f"{name}: needs_launcher is not set (one process has nothing to sum over)")
    launcher, env = _torchrun(2)
    (tmp_path / "totals.py").write_text(TOTALS, encoding="utf-8")
    proc = subprocess.run([sys.executable, *launcher, str(tmp_path / "totals.py"), name, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(_failure(f"{name}: reduce_sum on 2 processes", proc))
    rows = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(tmp_path.glob("rank-*.json"))]
    assert len(rows) == 2, _failure(f"{name}: reduce_sum on 2 processes", proc)
    for row in rows:
        want = row["dp_size"] * (row["dp_size"] + 1) / 2
        assert row["sum"] == want, (
            f"{name}: reduce_sum gave {row['sum']:g} on rank {row['rank']}, not the sum over its {row['dp_size']} "
            f"data-parallel ranks ({want:g}); a data-parallel strategy on core's Strategy overrides reduce_sum "
            "(docs/plugins.md section 12), or whole-set metrics count one rank's rows")
