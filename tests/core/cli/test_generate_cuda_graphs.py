"""`deepseek generate --cuda-graphs/--no-cuda-graphs` and `bench latency --only` on the CPU: asking
for CUDA graphs where they cannot run is one line (exit 2), `--no-cuda-graphs` decodes as the
default does, and a mistyped variant name gets a did-you-mean. (The graph itself needs CUDA:
tests/core/models/test_static_decoding.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_cli import Hostile, invoke

from deepseek.plugins.host import PluginHost

GREEDY = ["--temperature", "0", "--max-new-tokens", "10", "--device", "cpu"]


def test_cuda_graphs_on_the_cpu_are_refused_in_one_line(hostile: Hostile, trained_run: Path) -> None:
    line = hostile.refused("generate", "--checkpoint", str(trained_run), "--cuda-graphs", *GREEDY, "def ",
                           expect=["--cuda-graphs: the model is on cpu, CUDA graphs need a CUDA device"])
    assert line.endswith("; drop --cuda-graphs")


def test_a_compiled_step_without_graphs_is_refused_in_one_line(hostile: Hostile, trained_run: Path) -> None:
    hostile.refused("generate", "--checkpoint", str(trained_run), "--compile-step", *GREEDY, "def ",
                    expect=["--compile-step: compiles the CUDA-graph step, and there is none here (the model is on "
                            "cpu, CUDA graphs need a CUDA device); drop --compile-step"])


def test_no_cuda_graphs_decodes_as_the_default(trained_run: Path, core_host: PluginHost, one_thread: None) -> None:
    default = invoke(["generate", "--checkpoint", str(trained_run), *GREEDY, "def "], core_host)
    off = invoke(["generate", "--checkpoint", str(trained_run), "--no-cuda-graphs", *GREEDY, "def "], core_host)
    assert default.code == off.code == 0, default.stderr + off.stderr
    assert off.stdout == default.stdout and off.stdout.startswith("def ")
    assert default.stderr == ""  # not asked for: eager, nothing to say


@pytest.mark.parametrize(("name", "expect"), [
    ("deepseek static-cache grap", "did you mean 'deepseek static-cache'?"),
    ("torch.compile reduce-overhead", "choose from eager, torch.compile, torch.compile+freezing"),
])
def test_unknown_latency_variants_are_one_line(name: str, expect: str, hostile: Hostile) -> None:
    hostile.refused("bench", "latency", "--model", "tiny", "--seq", "8", "--mode", "decode", "--only", name,
                    expect=[f"--only: no variant {name!r} for --mode decode on cpu", expect])
