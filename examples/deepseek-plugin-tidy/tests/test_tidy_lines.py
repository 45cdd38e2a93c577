"""deepseek-tidy's model and dataset: a line classifier over nested batches, trained by core's
trainer with no special case, its options validated, resumed bit-exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

from deepseek_tidy.lines import label_of


def _host() -> PluginHost:
    return PluginHost(PluginSettings(allow=frozenset({"deepseek-tidy"})))


def _config(tmp_path: Path, host: PluginHost, **train: Any) -> Any:
    return config_from_dict({
        "model": {"name": "tidy.line-classifier", "width": 32},
        "data": {"name": "tidy.source-lines", "batch_size": 32, "eval_batches": 4, "files": 60},
        "train": {"max_steps": 30, "decay_steps": 30, "warmup_steps": 2, "eval_interval": 15, "lr": 1e-2,
                  "min_lr": 1e-3, **train},
        "precision": {"dtype": "fp32"},
        "strategy": {"name": "single", "device": "cpu"},
        "checkpoint": {"interval": 15},
        "logging": {"progress": False, "runs_dir": str(tmp_path)},
    }, host=host)


def test_labels() -> None:
    assert [label_of(s) for s in ("x = 1", "  # note", "import os", "from a import b", "   ")] == [0, 1, 2, 2, None]


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"^model\.widht: unknown key \(did you mean 'width'\?\)"):
        config_from_dict({"model": {"name": "tidy.line-classifier", "widht": 3}}, host=_host())
    with pytest.raises(ConfigError, match=r"^data\.files: must be >= 1, got 0"):
        config_from_dict({"data": {"name": "tidy.source-lines", "files": 0}}, host=_host())


def test_trains_to_a_useful_accuracy_and_resumes_exactly(tmp_path: Path) -> None:
    host = _host()
    full = Trainer(_config(tmp_path, host), run_dir=tmp_path / "full", host=host).fit()
    evals = [r for r in read_metrics(full.run_dir / "metrics.jsonl") if "val_loss" in r]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert full.val_metrics["val_accuracy"] > 0.9  # '#' and 'import' are easy to see in the bytes
    part = Trainer(_config(tmp_path, host, max_steps=15), run_dir=tmp_path / "part", host=host).fit()
    resumed = Trainer(_config(tmp_path, host), resume=part.checkpoint, host=host).fit()
    assert resumed.losses == full.losses[15:]
