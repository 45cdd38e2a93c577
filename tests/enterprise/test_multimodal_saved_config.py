"""A multimodal checkpoint's config read back from disk: its encoders' tables, checked as the
model is built, are refused in one line naming the file, like the rest of the saved config."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
import torch
from _inprocess import deepseek_here
from safetensors.torch import save_file


def test_a_bad_encoder_table_in_saved_weights_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "mm.safetensors"
    model = {"name": "multimodal.classifier", "modalities": ["vision", "text"], "vision": {"depths": "x"}}
    save_file({"unused": torch.zeros(1)}, str(weights), metadata={"format": "deepseek-weights", "model": json.dumps(model)})
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "export", "--checkpoint", str(weights), "--out", "m.pt2")
    assert code == 2, err
    assert err.splitlines() == [
        f"error: {weights} (the checkpoint's config): model.vision.depths: expected a list, got 'x' (str); "
        "if the file was edited or is damaged, use another checkpoint"
    ]
    assert not (tmp_path / "m.pt2").exists()


def test_resuming_with_a_bad_encoder_table_names_the_checkpoint_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train --resume RUN`` without a config file trains with the checkpoint's config: its encoder
    tables are checked (the model built on the meta device) before anything runs, naming the file."""
    config = Path(__file__).resolve().parents[2] / "examples" / "multimodal" / "digits.toml"
    small = ["--set", "train.max_steps=1", "--set", "data.batch_size=8", "--set", "data.eval_batches=1",
             "--set", "train.eval_interval=0", "--set", "logging.plot=false"]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", str(config), *small, "--run-dir", "run", "--quiet")
    assert code == 0, err
    step = tmp_path / "run" / "checkpoints" / "step-1"
    state = json.loads((step / "trainer.json").read_text())
    state["config"]["model"]["vision"]["depths"] = "x"
    (step / "trainer.json").write_text(json.dumps(state))
    commit = json.loads((step / "commit.json").read_text())
    commit["files"]["trainer.json"] = (step / "trainer.json").stat().st_size  # edited, not damaged
    commit["crc32"]["trainer.json"] = f"{zlib.crc32((step / 'trainer.json').read_bytes()):08x}"
    (step / "commit.json").write_text(json.dumps(commit))
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "--resume", "run", "--max-steps", "2", "--quiet")
    assert code == 2, err
    assert err.splitlines() == [
        "error: run/checkpoints/step-1/trainer.json (the checkpoint's config, with this command's options): model.vision.depths: "
        "expected a list, got 'x' (str); if the file was edited or is damaged, resume from another checkpoint or "
        "pass the run's config.toml"
    ]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
