"""``bench train`` smoke test on the CPU: JSON fields and loss parity with the plain loop.

No timing asserts: speed is measured by running the command, not by tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepseek.bench.train import peak_tflops, train_command
from deepseek.errors import ConfigError, UsageError


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
        assert row["tokens_per_s"] == pytest.approx(4 * 128 / (sum(row["step_times_s"]) / 3))
        assert row["mfu"] is None and row["peak_memory_bytes"] > 0
        assert row["memory_kind"].startswith("process peak RSS")
    assert ours["host_syncs_per_step"] == 1 and plain["host_syncs_per_step"] == 0  # CPU: read every step
    assert "read every 1" in ours["name"]
    # Same seed, same batches, same AdamW settings: the two loops train identically.
    assert ours["loss_first"] == pytest.approx(plain["loss_first"], rel=1e-5)
    assert ours["loss_last"] == pytest.approx(plain["loss_last"], rel=1e-4)


def _non_embedding(model: dict) -> int:
    """PaLM's N for the tiny preset: every parameter but the position table."""
    from deepseek.advise.estimate import gpt_param_count

    n = gpt_param_count(vocab_size=model["vocab_size"], d_model=model["d_model"], n_layers=model["n_layers"],
                        d_ff=model["d_ff"], max_seq_len=model["max_seq_len"])
    return n - model["max_seq_len"] * model["d_model"]


def test_the_default_sequence_fits_the_model(tmp_path: Path) -> None:
    """Without --seq: 2048, or the model's context when shorter (tiny's 128; was 2048 and refused)."""
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--batch", "1", "--steps", "1", "--warmup", "0", "--device", "cpu", "--precision",
            "fp32", "--model-option", "max_seq_len=32", "--json", str(out)]
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["seq"] == 32


def test_log_every_sets_our_read_interval(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--model", "tiny", "--seq", "64", "--batch", "2", "--steps", "4", "--warmup", "0",
            "--device", "cpu", "--precision", "fp32", "--log-every", "4", "--json", str(out)]
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (ours,) = json.loads(out.read_text())["rows"]
    assert "read every 4" in ours["name"] and ours["host_syncs_per_step"] == 0.25
    assert ours["loss_last"] < ours["loss_first"]


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
    result = CliRunner().invoke(train_command, ["--model", "tiny", "--device", "cpu", *args])
    assert result.exit_code != 0  # a click parameter error (exit 2) or a UsageError from the command
    assert match in (result.output + str(result.exception if isinstance(result.exception, UsageError) else ""))


def test_cli_wiring_bad_input_exits_2() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "deepseek", "bench", "train", "--model", "tiny", "--steps", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: Invalid value for '--steps': 0 is not in the range 1<=x<=1000000. (see 'deepseek bench train --help')"]


def _bench(tmp_path: Path, name: str, *args: str) -> dict:
    """One tiny fp32 CPU run (seq 32, 2 measured steps); the JSON it wrote."""
    out = tmp_path / f"{name}.json"
    base = ["--model", "tiny", "--seq", "32", "--steps", "2", "--warmup", "1", "--device", "cpu",
            "--precision", "fp32", "--json", str(out)]
    result = CliRunner().invoke(train_command, [*base, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_grad_accum_matches_the_plain_loop_and_one_big_batch(tmp_path: Path) -> None:
    accum = _bench(tmp_path, "accum", "--batch", "2", "--grad-accum", "2", "--baseline", "--baseline-variants", "eager")
    assert accum["settings"]["grad_accum"] == 2 and accum["settings"]["tokens_per_step"] == 2 * 32 * 2
    ours, plain = accum["rows"]
    # Tolerances as in the test above: the same loss in both loops, the same updates.
    assert ours["loss_first"] == pytest.approx(plain["loss_first"], rel=1e-5)
    assert ours["loss_last"] == pytest.approx(plain["loss_last"], rel=1e-4)
    # The same 4 rows per step in one micro-batch: the mean of the two micro-batch losses is the
    # full batch's loss, and the accumulated gradient the full batch's gradient.
    (big,) = _bench(tmp_path, "big", "--batch", "4")["rows"]
    assert ours["loss_first"] == pytest.approx(big["loss_first"], rel=1e-5)
    assert ours["loss_last"] == pytest.approx(big["loss_last"], rel=1e-4)


def test_grad_clip_is_what_both_paths_clip_to(tmp_path: Path) -> None:
    """``bench train`` clipped at 1.0 whatever was asked; now at ``--grad-clip`` in both paths (0:
    not at all), recorded in the result, by default ``train.grad_clip``'s default (the schema's)."""
    from deepseek.bench._train_config import BenchSettings
    from deepseek.config.schema import TrainConfig

    assert BenchSettings().grad_clip == TrainConfig().grad_clip == 1.0
    lasts = []
    for clip in ("0", "0.01"):  # lr 0.01: AdamW's steps, which clipping rescales unevenly, tell apart
        data = _bench(tmp_path, f"clip{clip}", "--batch", "2", "--lr", "0.01", "--grad-clip", clip, "--baseline",
                      "--baseline-variants", "eager")
        assert data["settings"]["grad_clip"] == float(clip)
        ours, plain = data["rows"]
        assert ours["loss_last"] == pytest.approx(plain["loss_last"], rel=1e-4)
        lasts.append(ours["loss_last"])
    assert lasts[0] != pytest.approx(lasts[1], rel=1e-3)  # measured: 5.7378 unclipped, 5.7488 at 0.01


def test_model_option_changes_the_model_of_both_paths(tmp_path: Path) -> None:
    data = _bench(tmp_path, "layers", "--batch", "2", "--model-option", "n_layers=2", "--baseline",
                  "--baseline-variants", "eager")
    model = data["model"]
    assert model["n_layers"] == 2  # the tiny preset has 4
    assert model["flops_per_token"] == 6 * _non_embedding(model) + 12 * 2 * 128 * 32
    ours, plain = data["rows"]  # the plain loop builds the same 2-layer model: same losses
    assert ours["loss_first"] == pytest.approx(plain["loss_first"], rel=1e-5)
    assert ours["loss_last"] == pytest.approx(plain["loss_last"], rel=1e-4)


@pytest.mark.parametrize("args,line", [
    (["--grad-accum", "0"], r"error: Invalid value for '--grad-accum': 0 is not in the range x>=1\. .*"),
    (["--grad-clip", "-1"], r"error: Invalid value for '--grad-clip': '-1' is out of range; give a finite number "
                            r">= 0 \(see 'deepseek bench train --help'\)"),
    (["--model-option", "n_layerz=2"], r"error: model\.n_layerz: unknown key \(did you mean 'n_layers'\?\); .*"),
    # a malformed item names the option given, not the '--set model.KEY' it is read as
    (["--model-option", "n_layers..x=2"], r"error: --model-option 'n_layers\.\.x=2': expected KEY=VALUE, a key of "
                                          r"\[model\], e\.g\. --model-option n_layers=32"),
    (["--optimizer-option", "weight_decay"], r"error: --optimizer-option 'weight_decay': expected KEY=VALUE, a key "
                                             r"of \[optimizer\], e\.g\. --optimizer-option weight_decay=0"),
    # FlashAttention-4 and cuDNN's attention need a CUDA device: refused before anything is built.
    (["--attention", "fa4"], r"error: --attention fa4 needs a CUDA device and this run's device is the CPU; "
                             r"use one of auto, flash, math there"),
    (["--attention", "cudnn"], r"error: --attention cudnn needs a CUDA device .*"),
])
def test_bad_new_options_exit_2_with_one_line(args: list[str], line: str) -> None:
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "deepseek", "bench", "train", "--model", "tiny", "--device", "cpu",
                          "--steps", "1", "--warmup", "0", *args], capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(line, lines[0]), out.stderr


def test_our_path_trains_with_the_named_optimizer_and_its_keys(tmp_path: Path) -> None:
    base = ["--model", "tiny", "--seq", "32", "--batch", "2", "--steps", "2", "--warmup", "0", "--device", "cpu",
            "--precision", "fp32"]
    out = tmp_path / "sgd.json"
    result = CliRunner().invoke(train_command, [*base, "--optimizer", "sgd", "--optimizer-option", "nesterov=true",
                                                "--json", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["settings"]["optimizer"] == "sgd" and data["settings"]["optimizer_options"] == ["nesterov=true"]
    assert data["rows"][0]["name"].startswith("deepseek single, sgd(nesterov=true)")
    bad = CliRunner().invoke(train_command, [*base, "--optimizer", "sgd", "--optimizer-option", "nestrov=true"])
    assert isinstance(bad.exception, ConfigError)  # the CLI's root prints it as one line, exit 2
    assert str(bad.exception).startswith("optimizer.nestrov: unknown key (did you mean 'nesterov'?)")
