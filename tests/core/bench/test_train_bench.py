"""``bench train`` smoke test on the CPU: JSON fields and loss parity with the plain loop.

No timing asserts: speed is measured by running the command, not by tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepseek.bench.train import peak_tflops, train_command
from deepseek.errors import UsageError


def test_tiny_on_cpu_writes_json_and_matches_the_plain_loop(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--seq", "128", "--batch", "4", "--steps", "3", "--warmup", "1",
            "--device", "cpu", "--precision", "fp32", "--baseline", "--baseline-variants", "eager",
            "--json", str(out)]
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "deepseek single" in result.output and "plain PyTorch eager" in result.output
    data = json.loads(out.read_text())
    assert data["device"]["type"] == "cpu" and data["device"]["peak_tflops"] is None
    assert data["settings"]["tokens_per_step"] == 4 * 128
    model = data["model"]
    assert model["flops_per_token"] == 6 * (model_params := _non_embedding(model)) + 12 * 4 * 128 * 128
    assert model_params > 0
    ours, plain = data["rows"]
    assert (ours["path"], plain["path"]) == ("deepseek", "plain")
    for row in (ours, plain):
        assert row["steps"] == 3 and len(row["step_times_s"]) == 3
        assert row["median_step_s"] > 0 and row["tokens_per_s"] > 0 and row["tflops"] > 0
        assert row["mfu"] is None and row["peak_memory_bytes"] > 0
        assert row["memory_kind"].startswith("process peak RSS")
    assert ours["host_syncs_per_step"] == 1 and plain["host_syncs_per_step"] == 0
    # Same seed, same batches, same AdamW settings: the two loops train identically.
    assert ours["loss_first"] == pytest.approx(plain["loss_first"], rel=1e-5)
    assert ours["loss_last"] == pytest.approx(plain["loss_last"], rel=1e-4)


def _non_embedding(model: dict) -> int:
    """PaLM's N for the tiny preset: every parameter but the position table."""
    from deepseek.advise.estimate import gpt_param_count

    n = gpt_param_count(vocab_size=model["vocab_size"], d_model=model["d_model"], n_layers=model["n_layers"],
                        d_ff=model["d_ff"], max_seq_len=model["max_seq_len"])
    return n - model["max_seq_len"] * model["d_model"]


def test_peak_table() -> None:
    assert peak_tflops("NVIDIA H200", "bf16") == 989.0
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert peak_tflops("NVIDIA H200", "fp32") == 494.7
    assert peak_tflops("NVIDIA GeForce RTX 4090", "bf16") is None


@pytest.mark.parametrize("args,match", [
    (["--steps", "0"], "--steps"),
    (["--warmup", "-1"], "--warmup"),
    (["--baseline-variants", "fast"], "--baseline-variants"),
    (["--peak-tflops", "-3"], "--peak-tflops"),
])
def test_bad_options(args: list[str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        CliRunner().invoke(train_command, ["--model", "tiny", "--device", "cpu", *args], catch_exceptions=False)


def test_cli_wiring_bad_input_exits_2() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "deepseek", "bench", "train", "--model", "tiny", "--steps", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: --steps: must be >= 1, got 0"]
