"""``deepseek advise`` end to end: JSON output, bad input, no torch import for --params."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deepseek.advise.hardware import parse_size
from deepseek.cli.advise_cmd import parse_count
from deepseek.errors import UsageError


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", "advise", *args], capture_output=True, text=True)


def test_json_output_for_two_gpus() -> None:
    out = _run("--params", "1.3e9", "--gpus", "2", "--gpu-memory", "80GiB", "--seq", "2048", "--batch", "4", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    keys = [e["key"] for e in report["estimates"]]
    assert keys == ["single", "single+offload", "ddp", "ddp+offload", "zero1", "zero1+offload",
                    "zero2", "zero2+offload", "zero3", "zero3+offload", "tp", "tp+sp"]
    for e in report["estimates"]:
        assert {"weights", "gradients", "optimizer", "activations", "buffers", "overhead", "total", "host",
                "fits", "bytes_per_param"} <= set(e)
        fixed = sum(e[k] for k in ("weights", "optimizer", "buffers", "overhead"))
        both = e["gradients"] + e["activations"]
        if e["backward_buffers"]:
            expected = fixed - e["buffers"] + max(e["activations"], e["buffers"] + e["gradients"])
        else:
            expected = fixed + (both if e["grads_persist"] else max(e["gradients"], e["activations"]))
        assert e["total"] == expected
    assert report["device"] == {**report["device"], "count": 2, "memory": 80 * 1024**3, "source": "user"}
    assert report["recommendation"]["edition"] == "pro"
    assert report["recommendation"]["strategy"] == "ddp"
    assert report["bytes_per_param_paper"] == {"weights": 2, "gradients": 2, "optimizer": 12}
    assert [r["total"] for r in report["tco"]["rows"]] == [75000, 200000, 550000]


def test_preset_and_table_output() -> None:
    out = _run("--model", "small", "--gpus", "1", "--gpu-memory", "24GiB", "--modalities", "text,speech")
    assert out.returncode == 0, out.stderr
    assert "enterprise" in out.stdout and "zero3+offload" in out.stdout and "3-year cost" in out.stdout
    assert "preset small: 0.086B parameters" in out.stdout


def test_params_path_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom deepseek.cli.main import cli\n"
        "try:\n    cli.main(['advise', '--params', '7B', '--gpus', '8', '--gpu-memory', '80GB', '--json'],"
        " standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().endswith("NO-TORCH")
    assert json.loads(out.stdout)["model"]["n_params"] == 7_000_000_000


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--params", "-5"], "--params"),
        (["--params", "lots"], "--params"),
        (["--params", "1e9", "--modalities", "text,smell"], "unknown modality 'smell'"),
        (["--params", "1e9", "--gpus", "1", "--gpu-memory", "eighty"], "--gpu-memory"),
        (["--params", "1e9", "--gpus", "-1", "--gpu-memory", "8GiB"], "--gpus"),
        (["--params", "1e9", "--gpus", "1.5", "--gpu-memory", "8GiB"], "--gpus"),
        # was estimated: 1e9 GPUs, each row's states a few bytes a GPU
        (["--params", "1e9", "--gpus", str(10**9), "--gpu-memory", "80GiB"],
         "--gpus: 1,000,000,000 GPUs is beyond what the advisor models (at most 1,048,576, "),
        (["--params", "1e9", "--gpus", str(2**20 + 1), "--gpu-memory", "80GiB"], "at most 1,048,576"),
        (["--params", "1e9", "--model", "small"], "exactly one"),
        ([], "exactly one"),
        (["--model", "medium"], "unknown preset"),
        (["--model", "tiny", "--seq", "4096", "--gpus", "0"], "max_seq_len"),
        (["--params", "1e9", "--gpus", "0", "--precision", "fp8"], "--precision"),
        (["--params", "1e9", "--gpus", "0", "--cost", "pro.labour=3"], "did you mean 'labor'"),
        (["--params", "1e9", "--gpus", "0", "--headroom", "1.5"], "--headroom"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], fragment: str) -> None:
    out = _run(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_parse_helpers() -> None:
    assert parse_size("80GiB") == 80 * 1024**3
    assert parse_size("80GB") == 80 * 10**9
    assert parse_size("512 MiB") == 512 * 1024**2
    assert parse_size("80") == 80 * 1024**3
    assert parse_size("0", allow_zero=True) == 0
    for bad in ("", "GiB", "80XB", "-3GiB", "0"):
        with pytest.raises(UsageError):
            parse_size(bad)
    assert parse_count("1.3B") == 1.3e9 and parse_count("350m") == 350e6 and parse_count("7e9") == 7e9
    for bad in ("-1", "0", "abc", "1.3X"):
        with pytest.raises(UsageError):
            parse_count(bad)


def test_the_largest_gpu_count_is_estimated_and_the_largest_model_still_shards_to_gibibytes() -> None:
    """The bound on --gpus (docs/advise.md) takes 2**20 GPUs, where the largest --params (1e15)
    under ZeRO-3 keeps 16 B a parameter / 2**20 = 14.2 GiB of weights, gradients and optimizer a GPU."""
    out = _run("--params", "1e15", "--gpus", str(2**20), "--gpu-memory", "80GiB", "--json")
    assert out.returncode == 0, out.stderr
    zero3 = next(e for e in json.loads(out.stdout)["estimates"] if e["key"] == "zero3")
    states = zero3["weights"] + zero3["gradients"] + zero3["optimizer"]
    assert abs(states / 1024**3 - 14.2) < 0.1, states / 1024**3
