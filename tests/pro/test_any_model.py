"""A model and dataset that are not a GPT (``tests/toyplugin``: a classifier over a dict batch of
two tensors, registered through entry points by a third-party distribution) train under every
data-parallel strategy on 2 processes with the same losses as ``single``, checkpoint and resume
under them, evaluate, and ``pipeline``, ``hybrid`` and ``tp`` (capabilities it does not offer)
refuse the model before any process starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _prohelpers import losses, run_train_jobs, train_records

TOY = Path(__file__).resolve().parents[1] / "toyplugin"
DEEPSEEK = [sys.executable, "-m", "deepseek"]
STEPS = 6
RTOL = 1e-5  # as the GPT parity tests


def toy(strategy: str, steps: int = STEPS, **options: Any) -> dict[str, Any]:
    return {
        "model": {"name": "toyclf.mlp", "hidden": 32, "depth": 2},
        "data": {"name": "toyclf.blobs", "batch_size": 8, "eval_batches": 2},
        "train": {"max_steps": steps, "decay_steps": STEPS, "warmup_steps": 1, "eval_interval": 3,
                  "lr": 1e-2, "min_lr": 1e-3, "seed": 7},
        "precision": {"dtype": "fp32"},
        "checkpoint": {"interval": 3, "keep_last": 5},
        "logging": {"progress": False, "plot": False},
        "strategy": {"name": strategy, **options},
    }


JOBS = {
    "ddp": toy("ddp"),
    "fsdp": toy("fsdp"),
    "zero3": toy("zero3"),
    "ds1": toy("deepspeed", stage=1),
    "ds2": toy("deepspeed", stage=2),
    "ds3": toy("deepspeed", stage=3),
}


@pytest.fixture(scope="module")
def toy_env() -> dict[str, str]:
    """The environment of a process that finds the toy plugin like an installed one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TOY), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, toy_env: dict[str, str]) -> dict[str, Any]:
    """``single`` in a process of its own, then every strategy (and a resume from ddp's step-3
    checkpoint under fsdp) in one 2-process torchrun job."""
    work = tmp_path_factory.mktemp("toy")
    spec = work / "single.json"
    spec.write_text(json.dumps(toy("single", device="cpu")))
    script = ("import json, sys\nfrom deepseek.config.load import config_from_dict\n"
              "from deepseek.training.trainer import Trainer\n"
              "Trainer(config_from_dict(json.load(open(sys.argv[1]))), run_dir=sys.argv[2], quiet=True).fit()\n")
    done = subprocess.run([sys.executable, "-c", script, str(spec), str(work / "single")], env=toy_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = toy_env["PYTHONPATH"]  # the torchrun workers import the plugin too
    try:
        jobs = [{"name": name, "config": config} for name, config in JOBS.items()]
        jobs.append({"name": "fsdp_resumed", "config": toy("fsdp"),
                     "resume": work / "ddp" / "checkpoints" / "step-3"})
        records = run_train_jobs(jobs, work, timeout=600)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    records["single"] = train_records(work / "single")
    return {"dir": work, "records": records}


@pytest.mark.parametrize("name", list(JOBS))
def test_each_strategy_matches_single(runs: dict[str, Any], name: str) -> None:
    ref = runs["records"]["single"]
    got = runs["records"][name]
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert losses(got) == pytest.approx(losses(ref), rel=RTOL), name
    assert [r["accuracy"] for r in got] == pytest.approx([r["accuracy"] for r in ref], abs=1e-6)
    evals = [r for r in json_lines(runs["dir"] / name) if "val_loss" in r]
    ref_evals = [r for r in json_lines(runs["dir"] / "single") if "val_loss" in r]
    assert [e["val_loss"] for e in evals] == pytest.approx([e["val_loss"] for e in ref_evals], rel=RTOL)
    assert [e["val_accuracy"] for e in evals] == pytest.approx([e["val_accuracy"] for e in ref_evals], abs=1e-6)


def test_ddp_checkpoint_resumes_under_fsdp(runs: dict[str, Any]) -> None:
    resumed = runs["records"]["fsdp_resumed"]
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert losses(resumed) == pytest.approx(losses(runs["records"]["single"])[3:], rel=RTOL)


def test_eval_with_core_alone_reads_a_deepspeed_checkpoint(runs: dict[str, Any], toy_env: dict[str, str]) -> None:
    out = subprocess.run([*DEEPSEEK, "eval", "--checkpoint", str(runs["dir"] / "ds3"), "--json"],
                         env=toy_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)
    last = [r for r in json_lines(runs["dir"] / "single") if "val_loss" in r][-1]
    assert values["val_loss"] == pytest.approx(last["val_loss"], rel=1e-4)
    assert values["val_accuracy"] == pytest.approx(last["val_accuracy"], abs=1e-6)


@pytest.mark.parametrize(("strategy", "what"), [
    ("pipeline", "pipeline stages (split_stages, pipeline_batch, pipeline_loss)"),
    ("hybrid", "pipeline stages (split_stages, pipeline_batch, pipeline_loss)"),
    ("tp", "a tensor-parallel plan (tensor_parallel_plan)"),
])
def test_pipeline_and_tp_refuse_the_model_before_any_process(
    strategy: str, what: str, tmp_path: Path, toy_env: dict[str, str]
) -> None:
    args = ["launch", "-n", "2", "--", "train", "--strategy", strategy, "--set", "model.name=toyclf.mlp",
            "--set", "data.name=toyclf.blobs", "--set", "data.batch_size=8", "--run-dir", "run"]
    out = subprocess.run([*DEEPSEEK, *args], cwd=tmp_path, env=toy_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"error: strategy '{strategy}' needs {what}, which "
        "model 'toyclf.mlp' (BlobClassifier) does not offer; use another strategy (ddp, deepspeed, fsdp), or use "
        "a model that offers it (docs/plugins.md, 'Models')"
    )
    assert not (tmp_path / "run").exists()


def test_launch_trains_it_with_fsdp(tmp_path: Path, toy_env: dict[str, str]) -> None:
    args = ["launch", "-n", "2", "--", "train", "--strategy", "fsdp", "--max-steps", "2", "--run-dir", "run",
            "--set", "model.name=toyclf.mlp", "--set", "data.name=toyclf.blobs", "--set", "data.batch_size=8"]
    out = subprocess.run([*DEEPSEEK, *args], cwd=tmp_path, env=toy_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    records = json_lines(tmp_path / "run")
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert all("accuracy" in r and "samples_per_s" in r for r in records if "loss" in r)
    assert (tmp_path / "run" / "checkpoints" / "step-2" / "model.safetensors").is_file()


def json_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
