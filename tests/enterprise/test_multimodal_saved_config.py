"""A multimodal checkpoint's config read back from disk: its encoders' tables, checked as the
model is built, are refused in one line naming the file, like the rest of the saved config."""

from __future__ import annotations

import json
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
