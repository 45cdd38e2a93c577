"""``deepseek train`` prints each valid-but-ineffective setting as one ``warning:`` line on
stderr, with or without ``--quiet`` (which turns off the progress bar, not warnings, as with
every other warning of a run), and trains on."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_cli import TINY, invoke

from deepseek.plugins.host import PluginHost

WARMUP = ("warning: train.warmup_steps: 3 >= train.max_steps 1: the learning rate never reaches train.lr (warm-up "
          "lasts the whole run); lower warmup_steps or raise max_steps")
FP16 = ("warning: precision.dtype: \"fp16\" on the CPU: CPUs lack fast float16 kernels, so steps run much slower "
        "than fp32 (12x for the default model on a 2-core EPYC) and round to fp16 for no gain; use precision.dtype "
        "= \"fp32\" or \"auto\" on the CPU (fp16 is for GPUs)")


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


@pytest.mark.parametrize("quiet", [True, False])
def test_each_ineffective_setting_is_one_warning_line(quiet: bool, tmp_path: Path, core_host: PluginHost,
                                                      one_thread: None) -> None:
    tiny = [a for a in TINY if a != "--quiet"]
    at = tiny.index("--precision")
    tiny[at + 1] = "fp16"
    argv = ["train", *tiny, "--set", "train.warmup_steps=3", "--run-dir", str(tmp_path / "run")]
    outcome = invoke([*argv, "--quiet"] if quiet else argv, core_host)
    assert outcome.code == 0, outcome.stderr
    assert _warnings(outcome.stderr) == [WARMUP, FP16]
    assert "1 steps" in outcome.stdout


def test_the_tiny_run_prints_no_warning(tmp_path: Path, core_host: PluginHost, one_thread: None) -> None:
    outcome = invoke(["train", *TINY, "--run-dir", str(tmp_path / "run")], core_host)
    assert outcome.code == 0, outcome.stderr
    assert _warnings(outcome.stderr) == []


def test_config_show_does_not_warn(core_host: PluginHost) -> None:
    outcome = invoke(["config", "show", "--set", "train.warmup_steps=700"], core_host)
    assert outcome.code == 0, outcome.stderr
    assert _warnings(outcome.stderr) == []  # said when a run trains on it, not when it is shown
