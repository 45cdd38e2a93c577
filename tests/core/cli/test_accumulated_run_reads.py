"""A run trained with gradient accumulation whose batch the default batch (16 rows) does not
split by (12 rows in 3 micro-batches) is read like any run: ``generate``, ``eval`` (on its own
data and with another ``data.batch_size``) and ``export`` (and ``init_from``, which was not
affected). Reading a model took the checkpoint's ``[train]`` with an empty ``[data]``, and the
config check refused ``grad_accum = 3`` against the default 16 rows, so each command ended with
"trainer.json (the checkpoint's config): train.grad_accum: data.batch_size=16 is not divisible by
train.grad_accum=3" (pro's ``deepseek checkpoint export`` too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_cli import TINY, invoke

from deepseek.plugins.host import PluginHost


@pytest.fixture(scope="module")
def accumulated(tmp_path_factory: pytest.TempPathFactory, core_host: PluginHost, one_thread: None) -> Path:
    run = tmp_path_factory.mktemp("accum") / "run"
    outcome = invoke(["train", *TINY, "--set", "data.batch_size=12", "--set", "train.grad_accum=3",
                      "--run-dir", str(run)], core_host)
    assert outcome.code == 0, outcome.stderr
    return run


@pytest.mark.parametrize("args", [
    ["generate", "--temperature", "0", "--max-new-tokens", "4", "def "],
    ["eval", "--batches", "1"],
    ["eval", "--batches", "1", "--set", "data.batch_size=5"],
])
def test_commands_read_the_run(accumulated: Path, core_host: PluginHost, args: list[str]) -> None:
    outcome = invoke([args[0], "--checkpoint", str(accumulated), *args[1:]], core_host)
    assert outcome.code == 0, outcome.stderr
    if args[0] == "eval":
        rows = 5 if "data.batch_size=5" in args else 12
        assert f"1 batch, {rows} samples" in outcome.stdout + outcome.stderr


def test_export_and_init_from(accumulated: Path, core_host: PluginHost, tmp_path: Path) -> None:
    out = tmp_path / "model.pt2"
    exported = invoke(["export", "--checkpoint", str(accumulated), "--out", str(out)], core_host)
    assert exported.code == 0, exported.stderr
    assert out.stat().st_size > 0
    started = invoke(["train", *TINY, "--set", f"train.init_from=\"{accumulated}\"", "--run-dir",
                      str(tmp_path / "tuned")], core_host)
    assert started.code == 0, started.stderr
