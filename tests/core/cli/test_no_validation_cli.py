"""``deepseek train`` with ``data.eval_batches = 0`` (no validation): settings that need
evaluations are one ``error:`` line with exit code 2 and nothing written; the run trains, prints
no validation figure, and ``deepseek eval`` of it still evaluates (8 batches unless
``--batches`` says)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_cli import TINY, assert_refused, invoke

from deepseek.plugins.host import PluginHost
from deepseek.training.metrics import read_metrics

OFF = [*[a if a != "data.eval_batches=1" else "data.eval_batches=0" for a in TINY], "--max-steps", "2"]


@pytest.mark.parametrize(("setting", "named"), [
    ("checkpoint.keep_best=true", "checkpoint.keep_best: needs evaluations"),
    ("train.early_stop_patience=1", "train.early_stop_patience: needs evaluations"),
    ("train.monitor=\"val_bits_per_byte\"", "train.monitor: needs evaluations"),
])
def test_a_setting_that_needs_evaluations_is_refused_in_one_line(setting: str, named: str, tmp_path: Path,
                                                                 core_host: PluginHost) -> None:
    outcome = invoke(["train", *OFF, "--set", setting, "--run-dir", str(tmp_path / "run")], core_host)
    assert_refused(outcome, [named, "data.eval_batches = 0 turns validation off", "set data.eval_batches >= 1"])
    assert not (tmp_path / "run").exists()


def test_a_run_without_validation_prints_no_validation_and_eval_still_evaluates(
        tmp_path: Path, core_host: PluginHost, one_thread: None) -> None:
    run = tmp_path / "run"
    outcome = invoke(["train", *OFF, "--run-dir", str(run)], core_host)
    assert outcome.code == 0, outcome.stderr
    assert "validation loss" not in outcome.stdout and "2 steps" in outcome.stdout
    assert not [line for line in outcome.stderr.splitlines() if line.startswith("warning: ")]
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and not [k for r in rows for k in r if k.startswith("val_")]
    shown = invoke(["eval", "--checkpoint", str(run), "--json"], core_host)
    assert shown.code == 0, shown.stderr
    values = json.loads(shown.stdout)
    assert values["batches"] == 8 and values["val_loss"] > 0  # the field's default: the run's config says 0
    one = json.loads(invoke(["eval", "--checkpoint", str(run), "--json", "--batches", "1"], core_host).stdout)
    assert one["batches"] == 1
