"""``deepseek eval`` / ``generate --strategy pipeline`` under ``deepseek launch -n 2``: the model's
stages over the processes, each caching its own blocks' keys and values; the same tokens and the
same loss as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _prohelpers import run_single, tiny_run

from deepseek.models.gpt import GPT, GPTConfig
from deepseek.training.checkpoint import save_model_state

SHAPE = {"vocab_size": 256, "d_model": 64, "n_heads": 4, "n_layers": 3, "max_seq_len": 32}


def _random_weights(path: Path) -> Path:
    """An exported weights file of a 3-block GPT with random weights whose greedy continuation of
    "hello" varies (9 distinct tokens in 40; most seeds repeat one token); 3 blocks over 2 stages put a
    different number of blocks on each."""
    torch.manual_seed(6)
    model = GPT(GPTConfig(**SHAPE))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.08)
    meta = {"format": "deepseek-weights", "model": json.dumps({"name": "gpt", **SHAPE}), "step": "0"}
    return save_model_state(path, model.state_dict(), meta)


def _deepseek(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deepseek", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("sampling", [["--temperature", "0"], ["--temperature", "0.9", "--seed", "7"]],
                         ids=["greedy", "sampled"])
def test_generate_through_two_stages_prints_what_one_process_does(sampling: list[str], tmp_path: Path) -> None:
    # 5 prompt tokens + 40 new ones pass the 32-position window: the stages' caches are rebuilt.
    weights = _random_weights(tmp_path / "w.safetensors")
    args = ["generate", "--checkpoint", str(weights), *sampling, "--max-new-tokens", "40", "hello"]
    one = _deepseek(*args)
    two = _deepseek("launch", "-n", "2", "--", *args, "--strategy", "pipeline")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert one.stdout.startswith("hello") and len(set(one.stdout.removeprefix("hello"))) > 4
    assert two.stdout == "[rank0] " + one.stdout  # rank 0 alone prints


def test_a_prompt_file_is_served_through_two_stages_like_one_process(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path / "w.safetensors")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abc\nhello\nxyz\nuvw\n", encoding="utf-8")
    args = ["generate", "--checkpoint", str(weights), "--prompts", str(prompts), "--temperature", "0",
            "--max-new-tokens", "12"]
    one = _deepseek(*args)
    two = _deepseek("launch", "-n", "2", "--", *args, "--strategy", "pipeline")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert len(one.stdout.splitlines()) == 4
    assert two.stdout == "".join(f"[rank0] {line}\n" for line in one.stdout.splitlines())
    assert "served 4 prompts in 2 batches: 48 new tokens in" in two.stderr


def test_eval_through_two_stages_gives_the_loss_of_one_process(tmp_path: Path) -> None:
    run_single(tiny_run("single", 2), tmp_path / "run")
    args = ["eval", "--checkpoint", str(tmp_path / "run"), "--json"]
    one = _deepseek(*args, "--device", "cpu")
    two = _deepseek("launch", "-n", "2", "--", *args, "--strategy", "pipeline")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    (line,) = two.stdout.splitlines()
    assert line.startswith("[rank0] ")
    got, ref = json.loads(line.removeprefix("[rank0] ")), json.loads(one.stdout)
    assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6, abs=0)
    assert got["val_loss"] > 1.0


def test_hybrid_refuses_to_serve_in_one_line(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path / "w.safetensors")
    args = ["generate", "--checkpoint", str(weights), "--temperature", "0", "--max-new-tokens", "2", "hi"]
    hybrid = _deepseek("launch", "-n", "2", "--", *args, "--strategy", "hybrid")
    assert hybrid.returncode == 2 and hybrid.stdout == ""
    assert ("--strategy hybrid: eval and generate do not run under hybrid; use --strategy pipeline"
            in hybrid.stderr)
    assert "Traceback" not in hybrid.stderr
