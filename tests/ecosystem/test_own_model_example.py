"""examples/own_model/train.py, the README's "own model from a script" example, as a user runs it:
one process with `deepseek run`, two with `deepseek launch -n 2 -- run ... --strategy ddp|fsdp`
(deepseek-pro), the same losses either way, and an exact resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own_model" / "train.py"


def deepseek(*args: str, cwd: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    out = subprocess.run([sys.executable, "-m", "deepseek", *args], capture_output=True, text=True, cwd=cwd,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    line = [x for x in out.stdout.splitlines() if '"val_accuracy"' in x][-1]
    return json.loads(line[line.index("{"):])


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("single")
    return work / "runs" / "spirals", deepseek("run", str(EXAMPLE), cwd=work)


def test_the_example_learns_the_spirals_in_one_process(single: tuple[Path, dict]) -> None:
    run, report = single
    assert report["step"] == 300 and (run / "checkpoints" / "step-300" / "model.safetensors").is_file()
    assert report["val_accuracy"] > 0.9  # 600 held-out points, three classes (chance: 1/3)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path: Path, single: tuple[Path, dict], strategy: str) -> None:
    report = deepseek("launch", "-n", "2", "--", "run", str(EXAMPLE), "--strategy", strategy, cwd=tmp_path)
    run = tmp_path / "runs" / "spirals"
    one, two = losses(single[0]), losses(run)
    assert [s for s, _ in one] == [s for s, _ in two]
    assert max(abs(a - b) for (_, a), (_, b) in zip(one, two, strict=True)) < 1e-5
    assert report["val_accuracy"] == pytest.approx(single[1]["val_accuracy"], abs=1e-6)


def test_resume_under_the_launcher_continues_exactly(tmp_path: Path, single: tuple[Path, dict]) -> None:
    run = tmp_path / "runs" / "spirals"
    shutil.copytree(single[0], run)
    shutil.rmtree(run / "checkpoints" / "step-300")  # the example keeps the last two: 200 and 300
    deepseek("launch", "-n", "2", "--", "run", str(EXAMPLE), "--strategy", "ddp", "--resume",
             str(run / "checkpoints" / "step-200"), cwd=tmp_path)
    one, two = losses(single[0]), losses(run)
    assert [s for s, _ in one] == [s for s, _ in two]
    assert max(abs(a - b) for (_, a), (_, b) in zip(one, two, strict=True)) < 1e-5
