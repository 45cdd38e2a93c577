"""``model.temperature`` (the InfoNCE alignment's) has a lower bound, ``MIN_TEMPERATURE`` (0.01:
CLIP's cap of 100 on the logit scale): a far smaller one trained, then stopped at the first step
with an infinite gradient norm blamed on the data or the forward pass. It is refused as the config
loads: one line naming the key and the bound, exit 2, no run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here

from deepseek.config.load import config_from_dict
from deepseek_enterprise.multimodal import MIN_TEMPERATURE

TOML = """\
[model]
name = "multimodal.classifier"
modalities = ["vision", "text"]
contrastive_weight = 0.5
temperature = {temperature}
[data]
name = "multimodal.digits"
[train]
max_steps = 1
"""


def test_a_temperature_below_the_bound_is_refused_as_the_config_loads(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.toml").write_text(TOML.format(temperature="1e-30"))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "c.toml", "--run-dir", "run", "--quiet")
    assert code == 2
    assert err == ("error: model.temperature: must be >= 0.01 (the logit scale 1/temperature is capped at "
                   "100, as CLIP caps it), got 1e-30 (float)")
    assert not (tmp_path / "run").exists()
    model = {"name": "multimodal.classifier", "modalities": ["vision", "text"], "contrastive_weight": 0.5}
    assert config_from_dict({"model": {**model, "temperature": MIN_TEMPERATURE}}).model.options.temperature == 0.01
