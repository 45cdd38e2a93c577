"""ddp with PowerSGD compression resumes bit for bit: 6 steps straight equal 3 steps, a checkpoint
and 3 more from it, loss for loss, gradient norm for gradient norm, bytes sent for bytes sent, and
the final weights and PowerSGD state are the same tensors.

PowerSGD's state (iteration count, error feedback, warm-start factors) used to live in memory only:
the resumed run sent ``start_iter`` plain all-reduces again, without its error feedback, and its
losses parted from step 5 on. The state is laid out per DDP bucket in the bucket's parameter order,
which DDP changes after a process's first step, so the resumed first step also checks that the
state is laid out again for the layout it meets (``deepseek_pro.powersgd_state``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _prohelpers import tiny_config

OPTIONS = {"compression": "powersgd", "powersgd_start_iter": 2}


@pytest.fixture(scope="module")
def runs(train_jobs: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    work = tmp_path_factory.mktemp("powersgd_resume")
    config = tiny_config("ddp", 6, options=OPTIONS, model={"dropout": 0.1}, checkpoint={"interval": 3})
    jobs = [{"name": "straight", "config": config},
            {"name": "resumed", "config": config, "resume": work / "straight" / "checkpoints" / "step-3"}]
    return work, train_jobs(jobs, work, nproc=2, timeout=600)


def test_powersgd_resume_is_bit_exact(runs: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    _, records = runs
    straight, resumed = records["straight"], records["resumed"]
    assert [r["step"] for r in resumed] == [4, 5, 6]
    keys = ("loss", "grad_norm", "comm_bytes", "comm_bytes_uncompressed")
    assert [{k: r[k] for k in keys} for r in resumed] == [{k: r[k] for k in keys} for r in straight[3:]]
    assert resumed[0]["comm_bytes"] < resumed[0]["comm_bytes_uncompressed"]  # step 4 compressed


def test_powersgd_state_in_the_checkpoint(runs: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    import torch
    from safetensors.torch import load_file

    work, _ = runs
    a, b = work / "straight" / "checkpoints" / "step-6", work / "resumed" / "checkpoints" / "step-6"
    names = sorted(p.name for p in a.glob("*.safetensors"))
    assert "powersgd-0.safetensors" in names and "powersgd-1.safetensors" in names
    for name in names:
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys(), name
        assert all(torch.equal(ta[k], tb[k]) for k in ta), name
    state = load_file(str(a / "powersgd-1.safetensors"))
    assert any(k.startswith("error.") for k in state) and any(k.startswith("q.") for k in state)


def test_export_keeps_the_powersgd_state(runs: tuple[Path, dict[str, list[dict[str, Any]]]], tmp_path: Path) -> None:
    """``deepseek checkpoint export`` copies each rank's PowerSGD state with its generator states, so a
    run resumed from the copy goes on as from the original."""
    from deepseek_pro.checkpoint import export_checkpoint

    work, _ = runs
    source = work / "straight" / "checkpoints" / "step-6"
    out = export_checkpoint(source, tmp_path / "exported")
    for name in ("powersgd-0.safetensors", "powersgd-1.safetensors"):
        assert (out / name).read_bytes() == (source / name).read_bytes()
