"""``[model] pretrained`` reads a sharded unimodal run on the host the multimodal model is built
on (the run's): its ``sharded.json`` groups held to the optimizer its ``trainer.json`` names as
registered there, not on the process's host, where an optimizer registered only in-process (a
signed momentum) is not installed and the run's groups read as damage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _core_tests import core_test_module
from _hosts import enterprise_host

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.training.build import build_model
from deepseek_enterprise.pretrained import modality_prefixes

pytestmark = pytest.mark.usefixtures("one_thread")
shared = core_test_module("_negative_momentum")   # tests/core/_negative_momentum.py


def _model(**more: Any) -> dict[str, Any]:
    return {"model": {"name": "multimodal.classifier", "audio": {"d_model": 16, "n_heads": 2, "n_layers": 1},
                      "fusion_options": {"d_model": 16}, **more},
            "data": {"name": "multimodal.digits"}, "train": {"seed": 3}}


def _sharded_unimodal(host: PluginHost, out: Path) -> dict[str, torch.Tensor]:
    """A unimodal audio run's checkpoint in pro's sharded layout, trained with the plugin's
    optimizer; returns its weights (seeded otherwise than the fused model's)."""
    config = config_from_dict(_model(modalities=["audio"], fusion="late") | {"train": {"seed": 11}}, host=host)
    weights = {k: v.clone() for k, v in build_model(config, host=host).state_dict().items()}
    shared.write_sharded(out, weights, config.to_dict())
    return weights


def test_a_sharded_pretrained_run_is_read_on_the_models_host(tmp_path: Path) -> None:
    host = shared.registered(enterprise_host())
    source = tmp_path / "audio" / "step-1"
    theirs = _sharded_unimodal(host, source)
    fused = config_from_dict(_model(modalities=["audio"], fusion="late", pretrained={"audio": str(source)}), host=host)
    state = build_model(fused, host=host).state_dict()
    copied = [k for k in state if k.startswith(modality_prefixes("audio"))]
    assert copied and all(torch.equal(state[k], theirs[k]) for k in copied)
    fresh = build_model(config_from_dict(_model(modalities=["audio"], fusion="late"), host=host), host=host).state_dict()
    assert not all(torch.equal(fresh[k], theirs[k]) for k in copied)   # seeded otherwise: the copy shows
    with pytest.raises(ConfigError, match=r"model\.pretrained\.audio: .*sharded\.json: optimizer group 0 momentum is "
                                          r"-0\.5, below 0"):   # on the process's host the name is not installed
        build_model(config_from_dict(_model(modalities=["audio"], fusion="late", pretrained={"audio": str(source)})))
