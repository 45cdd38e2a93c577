"""``deepseek eval`` / ``generate --strategy pipeline`` under ``deepseek launch -n 2``: the model's
stages over the processes, each caching its own blocks' keys and values; the same tokens and the
same loss as one process (with a repetition penalty too: every rank keeps the same seen tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import deepseek_cli, deepseek_here, random_gpt_weights, run_single, tiny_run


def _random_weights(path: Path) -> Path:
    # 3 blocks over 2 stages: a different number on each; seed 6 / std 0.08 continue "hello" with
    # 9 distinct tokens in 40
    return random_gpt_weights(path, seed=6, std=0.08, n_layers=3)


# Greedy (argmax) and sampled with a repetition penalty: the penalized run samples at temperature
# 0.9 from seed 7 as plain sampling does, the penalty on top, so it checks plain sampling's path too.
@pytest.mark.parametrize("sampling", [["--temperature", "0"],
                                      ["--temperature", "0.9", "--seed", "7", "--repetition-penalty", "1.5"]],
                         ids=["greedy", "penalized"])
def test_generate_through_two_stages_prints_what_one_process_does(sampling: list[str], tmp_path: Path) -> None:
    # 5 prompt tokens + 40 new ones pass the 32-position window: the stages' caches are rebuilt.
    weights = _random_weights(tmp_path / "w.safetensors")
    args = ["generate", "--checkpoint", str(weights), *sampling, "--max-new-tokens", "40", "hello"]
    one = deepseek_here(*args, cwd=tmp_path)  # one process: this one
    two = deepseek_cli("launch", "-n", "2", "--", *args, "--strategy", "pipeline")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert one.stdout.startswith("hello") and len(set(one.stdout.removeprefix("hello"))) > 4
    assert two.stdout == "[rank0] " + one.stdout  # rank 0 alone prints


def test_a_prompt_file_is_served_through_two_stages_like_one_process(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path / "w.safetensors")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abc\nhello\nxyz\nuvw\n", encoding="utf-8")
    args = ["generate", "--checkpoint", str(weights), "--prompts", str(prompts), "--temperature", "0",
            "--max-new-tokens", "12"]
    one = deepseek_here(*args, cwd=tmp_path)  # one process: this one
    two = deepseek_cli("launch", "-n", "2", "--", *args, "--strategy", "pipeline")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert len(one.stdout.splitlines()) == 4
    assert two.stdout == "".join(f"[rank0] {line}\n" for line in one.stdout.splitlines())
    assert "served 4 prompts in 2 batches: 48 new tokens in" in two.stderr


def test_eval_through_two_stages_gives_the_loss_of_one_process(tmp_path: Path) -> None:
    run_single(tiny_run("single", 2), tmp_path / "run")
    args = ["eval", "--checkpoint", str(tmp_path / "run"), "--json"]
    one = deepseek_here(*args, "--device", "cpu", cwd=tmp_path)  # one process: this one
    two = deepseek_cli("launch", "-n", "2", "--", *args, "--strategy", "pipeline")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    (line,) = two.stdout.splitlines()
    assert line.startswith("[rank0] ")
    got, ref = json.loads(line.removeprefix("[rank0] ")), json.loads(one.stdout)
    assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-6, abs=0)
    assert got["val_loss"] > 1.0


def test_hybrid_refuses_to_serve_in_one_line(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path / "w.safetensors")
    args = ["generate", "--checkpoint", str(weights), "--temperature", "0", "--max-new-tokens", "2", "hi"]
    hybrid = deepseek_cli("launch", "-n", "2", "--", *args, "--strategy", "hybrid")
    assert hybrid.returncode == 2 and hybrid.stdout == ""
    assert ("--strategy hybrid: eval and generate do not run under hybrid; use --strategy pipeline"
            in hybrid.stderr)
    assert "Traceback" not in hybrid.stderr
