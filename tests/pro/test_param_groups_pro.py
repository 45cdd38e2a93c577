"""``[[optimizer.groups]]`` under every pro strategy (torchrun, 2 processes, CPU) against
``single``: the token embedding frozen (``lr_scale = 0``, which a pipeline's last stage holds as
the tied ``lm_head`` copy) and the first block at half the rate without weight decay.

Parity as in test_optimizers_pro (1e-5 relative over a few fp32 steps; the pipeline 1e-4, as in
test_pipeline_hybrid). The frozen embedding must not move by a bit under any strategy, and
DeepSpeed, which keeps only non-empty groups, must still write the six groups with their own
settings and resume from them exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomllib
from _prohelpers import (
    PARITY_STEPS,
    deepseek_cli,
    deepseek_here,
    losses,
    run_single,
    run_train_jobs,
    tiny_run,
)

from deepseek.training import checkpoint as ckpt

GROUPS = {"groups": [{"match": "wte.*", "lr_scale": 0.0},
                     {"match": "blocks.0.attn.*", "lr_scale": 0.5},
                     {"match": ["*.bias", "*ln*"], "weight_decay": 0.0}]}
"""Two of the eight groups are empty (rule 0 takes no vector, rule 2 no matrix): torch's
set_optimizer_state_dict accepts at most one, which the pro loaders must work around."""
EVERY = {"interval": 2, "keep_last": 5}
RESUMED = ("ddp", "fsdp", "pipeline", "ds2")
STRATEGIES = {"ddp": ({}, 1e-5), "fsdp": ({}, 1e-5), "tp": ({}, 1e-5), "pipeline": ({}, 1e-4),
              "ds2": ({"stage": 2}, 1e-5), "ds3": ({"stage": 3}, 1e-5)}


def _config(name: str, steps: int = PARITY_STEPS, **optimizer: Any) -> dict[str, Any]:
    options, _ = STRATEGIES[name]
    strategy = "deepspeed" if name.startswith("ds") else name
    return tiny_run(strategy, steps, options=options, optimizer={**GROUPS, **optimizer}, checkpoint=EVERY)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("param_group_runs")
    jobs = [{"name": name, "config": _config(name)} for name in STRATEGIES]
    jobs += [{"name": f"{name}_resumed", "config": _config(name), "resume": work / name / "checkpoints" / "step-2"}
             for name in RESUMED]
    jobs += [{"name": f"{name}_resumed_wd", "config": _config(name, weight_decay=0.5),
              "resume": work / name / "checkpoints" / "step-2"} for name in ("ddp", "ds2")]
    records = run_train_jobs(jobs, work, timeout=900)
    records["single"] = run_single(tiny_run("single", PARITY_STEPS, optimizer=GROUPS, checkpoint=EVERY),
                                   work / "single")
    return {**records, "dir": work}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_train_the_groups_as_single_does(name: str, runs: dict[str, Any]) -> None:
    ref = losses(runs["single"])
    assert len(ref) == PARITY_STEPS and ref[-1] < ref[0]
    assert losses(runs[name]) == pytest.approx(ref, rel=STRATEGIES[name][1])
    folder = runs["dir"] / name / "checkpoints"
    early, late = ckpt.load_model_state(folder / "step-2"), ckpt.load_model_state(folder / f"step-{PARITY_STEPS}")
    assert (early["wte.weight"] == late["wte.weight"]).all()  # lr_scale 0 under every strategy
    assert not (early["blocks.0.attn.qkv.weight"] == late["blocks.0.attn.qkv.weight"]).all()


@pytest.mark.parametrize("name", ["ds2", "pipeline", "fsdp"])
def test_checkpoints_keep_the_eight_groups_with_their_settings(name: str, runs: dict[str, Any]) -> None:
    named = ckpt.load_optimizer_state(runs["dir"] / name / "checkpoints" / f"step-{PARITY_STEPS}")
    groups = named["param_groups"]
    assert [(g["lr_scale"], g["weight_decay"]) for g in groups] == [
        (1.0, 0.1), (1.0, 0.0), (0.0, 0.1), (0.0, 0.0), (0.5, 0.1), (0.5, 0.0), (1.0, 0.0), (1.0, 0.0)]
    assert groups[2]["params"] == ["wte.weight"] and groups[3]["params"] == [] and groups[6]["params"] == []
    single = ckpt.load_optimizer_state(runs["dir"] / "single" / "checkpoints" / f"step-{PARITY_STEPS}")
    assert [sorted(g["params"]) for g in groups] == [sorted(g["params"]) for g in single["param_groups"]]


@pytest.mark.parametrize("name", RESUMED)
def test_resume_with_empty_groups_is_exact(name: str, runs: dict[str, Any]) -> None:
    assert losses(runs[f"{name}_resumed"]) == losses(runs[name])[2:]


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed"])
def test_resume_with_other_rules_is_refused(strategy: str, runs: dict[str, Any], tmp_path: Path) -> None:
    source = "fsdp" if strategy == "fsdp" else "ds2"
    out = deepseek_cli("launch", "-n", "2", "--", "train", str(runs["dir"] / source / "config.toml"),
                       "--run-dir", str(tmp_path / "run"), "--resume", str(runs["dir"] / source / "checkpoints" / "step-2"),
                       "--set", 'optimizer.groups=[{match="wpe.*", lr_scale=0.0}, {match="blocks.0.attn.*"}, '
                       '{match=["*.bias", "*ln*"], weight_decay=0.0}]', timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "optimizer.safetensors: the checkpoint's optimizer groups differ from this run's ('wpe.weight': group 0 " \
           "there, group 2 here; 2 parameter(s) in all); resume with the [model] config and [[optimizer.groups]]" in out.stderr
    # the launcher's own check, from the checkpoint's metadata: one line, no worker started (no
    # "[rank0]"; DeepSpeed's refusal came after both workers had built its engine)
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: "), out.stderr[-2000:]


@pytest.mark.parametrize("name", ["ddp", "ds2"])
def test_resume_keeps_the_saved_weight_decay(name: str, runs: dict[str, Any]) -> None:
    # Every strategy resumes the checkpoint's hyper-parameters, as torch's load_state_dict does
    # (DeepSpeed took the config's); only lr_scale follows the config (test_checkpoint_format).
    assert losses(runs[f"{name}_resumed_wd"]) == losses(runs[name])[2:]


def test_deepspeed_resumes_the_groups_exactly(runs: dict[str, Any]) -> None:
    assert losses(runs["ds2_resumed"]) == losses(runs["ds2"])[2:]
    written = tomllib.loads((runs["dir"] / "ds2_resumed" / "config.toml").read_text())
    assert written["optimizer"]["groups"][0] == {"match": ["wte.*"], "lr_scale": 0.0}


def test_launch_refuses_a_rule_matching_nothing_before_any_process(tmp_path: Path) -> None:
    out = deepseek_here("launch", "-n", "2", "--", "train", "--strategy", "ddp", "--set", "model.name=tiny",
                        "--set", 'optimizer.groups=[{match="wte.*"}, {match="lm_head.*"}]',
                        "--run-dir", str(tmp_path / "run"), "--max-steps", "2", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [  # no "[rank0]": the launcher's own check, no process started
        "error: optimizer.groups.1.match: ['lm_head.*'] matches no parameter of the model; 'lm_head.weight' is "
        "tied to 'wte.weight' and trains under that name; its names look like "
        "'wte.weight', 'wpe.weight', 'blocks.0.ln1.weight', ... (deepseek config params lists them all)"]
    assert not (tmp_path / "run").exists()
