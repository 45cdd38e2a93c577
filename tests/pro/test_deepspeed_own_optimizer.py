"""DeepSpeed's own AdamW (``[strategy] optimizer = "deepspeed"``: FusedAdam on the CPU without
offload, as on GPUs) resumes bit for bit under torchrun (2 processes, gloo): its moments and step
count are scattered back into the ZeRO partitions. Before, the resume created no state for
DeepSpeed's optimizer classes (only for torch's Adam), so nothing was loaded into them and the
resumed run restarted Adam from zero moments and step 0 without a word (losses 1.4e-2 off the
straight run's from the second resumed step). A ``config_path`` file naming another optimizer,
whose state before a first step is not known, is refused at ``--resume`` in one line. Its
checkpoint resumes under another strategy (torch's AdamW) as every strategy's does, and so does
one written before its groups took the run's [optimizer] keys (FusedAdam's ``bias_correction``
and group ``step``), which ``checkpoint export`` now writes in the canonical form.

The first run in a fresh environment JIT-builds DeepSpeed's ``fused_adam`` op under
``TORCH_EXTENSIONS_DIR`` (1-2 minutes on 2 cores); later runs reuse it. The tests marked ``fused_adam``
start that build at the session's first test (``conftest._fused_adam_prebuild``), so that it runs
beside the other tests instead of inside this module's first job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _prohelpers import losses, rerecord, run_single, run_train_jobs, tiny_run
from safetensors.torch import load_file

from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.training.build import create_optimizer_builder
from deepseek_pro.strategies.deepspeed import DeepSpeedStrategy


def _config(**options: Any) -> dict[str, Any]:
    return tiny_run("deepspeed", 6, options={"stage": 1, **options}, train={"grad_accum": 2},
                    checkpoint={"interval": 3})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("own_adamw")
    config, step3 = _config(optimizer="deepspeed"), work / "straight" / "checkpoints" / "step-3"
    ddp = tiny_run("ddp", 6, train={"grad_accum": 2}, checkpoint={"interval": 3})
    records = run_train_jobs([{"name": "straight", "config": config},
                              {"name": "resumed", "config": config, "resume": step3},
                              {"name": "under_ddp", "config": ddp, "resume": step3}], work, timeout=600)
    return {"dir": work, **records}


@pytest.mark.fused_adam
def test_deepspeeds_own_adamw_resumes_bit_for_bit(runs: dict[str, Any]) -> None:
    straight, resumed = losses(runs["straight"]), losses(runs["resumed"])
    assert len(straight) == 6 and straight[-1] < straight[0]
    assert resumed == straight[3:]
    a = load_file(str(runs["dir"] / "straight" / "checkpoints" / "step-6" / "optimizer.safetensors"))
    b = load_file(str(runs["dir"] / "resumed" / "checkpoints" / "step-6" / "optimizer.safetensors"))
    assert a.keys() == b.keys() and {float(v) for k, v in b.items() if k.endswith("/step")} == {6.0}
    assert all(bool((a[k] == b[k]).all()) for k in a)


@pytest.mark.fused_adam
def test_its_checkpoint_resumes_under_torchs_adamw(runs: dict[str, Any]) -> None:
    """The checkpoint is the canonical one: its groups hold the run's [optimizer] keys, not
    FusedAdam's ``bias_correction`` and group ``step``, which torch's AdamW refused as another
    optimizer's (one line telling to resume with optimizer.name, which was already adamw)."""
    assert losses(runs["under_ddp"]) == pytest.approx(losses(runs["straight"])[3:], rel=1e-5)


@pytest.mark.parametrize(("kind", "refused"), [("AdamW", False), ("adam", False), ("SGD", True), ("Lamb", True)])
def test_a_config_path_optimizer_without_known_state_is_refused_at_resume(tmp_path: Path, kind: str,
                                                                          refused: bool) -> None:
    """The launcher's check (``Strategy.check_resume``), before any process starts."""
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}, "optimizer": {"type": kind, "params": {}}}))
    config = config_from_dict(_config(config_path=str(path)))
    builder = create_optimizer_builder(config)
    if not refused:
        DeepSpeedStrategy.check_resume(config, builder)
        return
    with pytest.raises(UsageError) as info:
        DeepSpeedStrategy.check_resume(config, builder)
    assert str(info.value) == (
        f"--resume: DeepSpeed's own optimizer {kind!r} (the optimizer of strategy.config_path) keeps state that "
        "strategy 'deepspeed' cannot load into ZeRO partitions before a first step (only Adam and AdamW are "
        "resumable); a run that must resume needs optimizer.type \"AdamW\" or \"Adam\" in the file, or no "
        "optimizer there (the run's [optimizer] then runs)")


def _written_before_the_fix(step: Path, folder: Path) -> Path:
    """``step`` as DeepSpeed's own AdamW wrote it before its groups took the run's [optimizer]
    keys: FusedAdam's own (``bias_correction``, a group ``step``; none of torch's AdamW's)."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.copytree(step, folder)
    victim = folder / "optimizer.safetensors"
    with safe_open(victim, framework="pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - no mapping
    groups = [{"params": g["params"], "lr": g["lr"], "bias_correction": True, "betas": g["betas"], "eps": g["eps"],
               "weight_decay": g["weight_decay"], "lr_scale": g["lr_scale"], "step": 3}
              for g in json.loads(meta["param_groups"])]
    save_file(tensors, victim, metadata={**meta, "param_groups": json.dumps(groups)})
    rerecord(folder, "optimizer.safetensors")
    return folder


@pytest.mark.fused_adam
def test_a_checkpoint_written_before_the_fix_resumes_under_another_strategy(runs: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    """Its FusedAdam keys are read as the writer now writes them; torch's AdamW (single here)
    refused it as written by another optimizer."""
    old = _written_before_the_fix(runs["dir"] / "straight" / "checkpoints" / "step-3", tmp_path / "old")
    config = tiny_run("single", 6, train={"grad_accum": 2}, checkpoint={"interval": 3})
    resumed = losses(run_single(config, tmp_path / "single", resume=old))
    assert resumed == pytest.approx(losses(runs["straight"])[3:], rel=1e-5)


@pytest.mark.fused_adam
def test_export_writes_a_checkpoint_written_before_the_fix_in_the_canonical_form(runs: dict[str, Any],
                                                                               tmp_path: Path) -> None:
    from deepseek_pro.checkpoint import export_checkpoint

    step = runs["dir"] / "straight" / "checkpoints" / "step-3"
    out = export_checkpoint(_written_before_the_fix(step, tmp_path / "old"), tmp_path / "out")
    fresh, exported = (json.loads(_metadata(p / "optimizer.safetensors")["param_groups"]) for p in (step, out))
    assert exported == fresh and "bias_correction" not in exported[0]


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        return fh.metadata()


@pytest.mark.fused_adam
def test_a_checkpoint_written_before_the_fix_still_resumes_its_own_adamw_bit_for_bit(runs: dict[str, Any],
                                                                                     tmp_path: Path) -> None:
    old = _written_before_the_fix(runs["dir"] / "straight" / "checkpoints" / "step-3", tmp_path / "old")
    records = run_train_jobs([{"name": "resumed", "config": _config(optimizer="deepspeed"), "resume": old}],
                             tmp_path, timeout=600)
    assert losses(records["resumed"]) == losses(runs["straight"])[3:]
