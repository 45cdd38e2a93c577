"""``tidy.allreduce`` under torchrun (2 gloo processes) trains like ``single`` in one process:
the same global batch, the same losses and gradient norms (dropout 0), the same weights in its
checkpoint, and the same step and validation metrics of a model whose metric only one rank's rows
return, with a whole-set total that ``reduce_sum`` adds up over the ranks (``_one_rank_metric.py``);
started without a launcher it is refused by core in one line."""

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
import torch
from deepseek.training.checkpoint import load_model_state

PROBE = Path(__file__).with_name("_one_rank_metric.py")

TOML = """\
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
max_steps = 3
warmup_steps = 1
eval_interval = 0
lr = 3e-3
seed = 7

[precision]
dtype = "fp32"

[logging]
progress = false
plot = false
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _python(args: list[str], *, nproc: int = 0, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a subprocess; under torchrun with ``nproc`` processes when given."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
                "--master-port", str(_free_port())] if nproc else []
    return subprocess.run([sys.executable, *launcher, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _deepseek(args: list[str], *, nproc: int = 0) -> subprocess.CompletedProcess[str]:
    """``deepseek ARGS`` in a subprocess; under torchrun with ``nproc`` processes when given."""
    return _python(["-m", "deepseek", *args], nproc=nproc)


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    """The end of a failed run's output without torchrun's own log lines (``W1202 ...``)."""
    lines = (proc.stdout + proc.stderr).splitlines()
    return "\n".join(line for line in lines if not re.match(r"[WEI]\d{4} ", line))[-4000:]


def _records(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted((r for r in rows if "loss" in r and "grad_norm" in r), key=lambda r: r["step"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("allreduce")
    (work / "tiny.toml").write_text(TOML, encoding="utf-8")
    out = {}
    for name, nproc in (("single", 0), ("tidy.allreduce", 2)):
        run = work / name
        proc = _deepseek(["train", str(work / "tiny.toml"), "--strategy", name, "--run-dir", str(run)], nproc=nproc)
        assert proc.returncode == 0, _tail(proc)
        out[name] = run
    return out


def test_losses_and_gradient_norms_match_single(runs: dict[str, Path]) -> None:
    got, ref = _records(runs["tidy.allreduce"]), _records(runs["single"])
    assert [r["step"] for r in got] == [r["step"] for r in ref] == [1, 2, 3]
    for key in ("loss", "grad_norm"):
        assert [r[key] for r in got] == pytest.approx([r[key] for r in ref], abs=1e-5), key


def test_rank_0_writes_the_canonical_checkpoint(runs: dict[str, Path]) -> None:
    got = load_model_state(runs["tidy.allreduce"] / "checkpoints" / "step-3" / "model.safetensors")
    ref = load_model_state(runs["single"] / "checkpoints" / "step-3" / "model.safetensors")
    assert set(got) == set(ref)
    for key, value in ref.items():
        torch.testing.assert_close(got[key], value, atol=1e-5, rtol=0, msg=key)


def test_without_a_launcher_core_refuses_it_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TOML, encoding="utf-8")
    proc = _deepseek(["train", str(tmp_path / "tiny.toml"), "--strategy", "tidy.allreduce"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: strategy 'tidy.allreduce' needs one process per device started by a launcher (missing "
        "environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); run it with "
        "`deepseek launch -n N -- train --strategy tidy.allreduce ...` "
        "(or `torchrun --nproc-per-node N -m deepseek train --strategy tidy.allreduce ...`)"]


def test_a_metric_only_one_rank_returns_is_reported_as_single_reports_it(tmp_path: Path) -> None:
    """Step 2 and the first validation batch hold one row labelled 2, so one rank's rows return
    ``late`` and the other's no metric: the ranks agree on the names before the all-reduce, and
    ``late`` is the mean over the rows that measured it, as ``single`` has it. Was: each rank
    all-reduced its own names, vectors of different lengths, which gloo refused or hung on (the
    probe's collective timeout, 60 s, or this test's ends it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_one_rank_metric", PROBE)
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    proc = _python([str(PROBE), str(tmp_path), "tidy.allreduce"], nproc=2, timeout=150)
    assert proc.returncode == 0, _tail(proc)
    ref = probe.record(tmp_path / "single", "single")
    assert ["late" in r for r in ref["steps"]] == [False, True, False]
    # Far enough from 0 that the ranks' plain mean (half of it: one rank measured it) is caught.
    assert 0.05 < ref["steps"][1]["late"] < 0.95 and 0.01 < ref["val"]["val_late"] < 0.95
    assert ref["val"]["val_twos"] == 1  # one rank's rows hold the row: reduce_sum gives both ranks 1 below
    seen = [json.loads((tmp_path / f"seen-{rank}.json").read_text(encoding="utf-8")) for rank in (0, 1)]
    got = seen[0]["steps"]
    assert [r["step"] for r in got] == [r["step"] for r in ref["steps"]] == [1, 2, 3]
    for mine, theirs in zip(got, ref["steps"], strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, abs=1e-5), (mine["step"], key)
    for rank in (0, 1):
        assert set(seen[rank]["val"]) == set(ref["val"]) == {"val_loss", "val_late", "val_twos"}
        for key, value in ref["val"].items():
            assert seen[rank]["val"][key] == pytest.approx(value, abs=1e-5), (rank, key)
