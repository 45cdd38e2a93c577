"""ddp with PowerSGD compression resumes bit for bit: 6 steps straight equal 4 (or 2) steps, a
checkpoint and the rest from it, loss for loss, gradient norm for gradient norm, bytes sent for bytes sent, and
the final weights and PowerSGD state are the same tensors.

PowerSGD's state (iteration count, error feedback, warm-start factors) used to live in memory only:
the resumed run sent ``start_iter`` plain all-reduces again, without its error feedback, and its
losses parted from step 5 on. The state is laid out per DDP bucket in the bucket's parameter order,
which DDP changes after a process's first step, so the resumed first step also checks that the
state is laid out again for the layout it meets (``deepseek_pro.powersgd_state``).

The random factors (the first compressed step's, and with ``powersgd_warm_start = false`` every
compressed step's) were drawn by torch's hook per bucket in the bucket's layout: a run resumed just
before the first compressed step, or any resume without warm start, drew other numbers than the
uninterrupted run (the step-5 gradient norm 2.034 against 2.017). They are drawn per parameter now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _prohelpers import tiny_config

OPTIONS = {"compression": "powersgd", "powersgd_start_iter": 2}


# warm_start false: every step draws new random factors from PowerSGD's own generator, whose
# state the checkpoint must carry as well (the warm-start factors are not kept then).
@pytest.fixture(scope="module", params=[True, False], ids=["warm_start", "no_warm_start"])
def runs(request: pytest.FixtureRequest, train_jobs: Any,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    work = tmp_path_factory.mktemp("powersgd_resume")
    options = {**OPTIONS, "powersgd_warm_start": request.param}
    config = tiny_config("ddp", 6, options=options, model={"dropout": 0.1}, checkpoint={"interval": 2})
    # step 2: the next step is the first compressed one (iteration 2), which draws the random
    # factors in the resumed process's first bucket layout; step 4: compression under way.
    jobs = [{"name": "straight", "config": config},
            {"name": "resumed", "config": config, "resume": work / "straight" / "checkpoints" / "step-4"},
            {"name": "resumed_at_2", "config": config, "resume": work / "straight" / "checkpoints" / "step-2"}]
    return work, train_jobs(jobs, work, nproc=2, timeout=600)


def test_powersgd_resume_is_bit_exact(runs: tuple[Path, dict[str, list[dict[str, Any]]]]) -> None:
    _, records = runs
    straight = records["straight"]
    keys = ("loss", "grad_norm", "comm_bytes", "comm_bytes_uncompressed")
    for name, first in (("resumed", 5), ("resumed_at_2", 3)):
        resumed = records[name]
        assert [r["step"] for r in resumed] == list(range(first, 7)), name
        assert [{k: r[k] for k in keys} for r in resumed] == [{k: r[k] for k in keys} for r in straight[first - 1:]], name
        assert resumed[0]["comm_bytes"] < resumed[0]["comm_bytes_uncompressed"]  # compressed


def test_powersgd_state_in_the_checkpoint(runs: tuple[Path, dict[str, list[dict[str, Any]]]],
                                         request: pytest.FixtureRequest) -> None:
    import torch
    from safetensors.torch import load_file

    work, _ = runs
    a = work / "straight" / "checkpoints" / "step-6"
    names = sorted(p.name for p in a.glob("*.safetensors"))
    assert "powersgd-0.safetensors" in names and "powersgd-1.safetensors" in names
    for run in ("resumed", "resumed_at_2"):
        b = work / run / "checkpoints" / "step-6"
        for name in names:
            ta, tb = load_file(str(a / name)), load_file(str(b / name))
            assert ta.keys() == tb.keys(), (run, name)
            assert all(torch.equal(ta[k], tb[k]) for k in ta), (run, name)
    state = load_file(str(a / "powersgd-1.safetensors"))
    assert any(k.startswith("error.") for k in state)
    warm_start = request.node.callspec.params["runs"]
    assert any(k.startswith("q.") for k in state) == warm_start  # warm-start factors only where kept


def test_export_keeps_the_powersgd_state(runs: tuple[Path, dict[str, list[dict[str, Any]]]], tmp_path: Path) -> None:
    """``deepseek checkpoint export`` copies each rank's PowerSGD state with its generator states, so a
    run resumed from the copy goes on as from the original."""
    from deepseek_pro.checkpoint import export_checkpoint

    work, _ = runs
    source = work / "straight" / "checkpoints" / "step-6"
    out = export_checkpoint(source, tmp_path / "exported")
    for name in ("powersgd-0.safetensors", "powersgd-1.safetensors"):
        assert (out / name).read_bytes() == (source / name).read_bytes()
