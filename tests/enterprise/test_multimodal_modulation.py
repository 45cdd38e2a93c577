"""``[model] gradient_modulation``: in training, the encoder of the modality whose own classifier is
the most confident on the batch gets its gradient multiplied by ``1 - tanh(alpha * (r - 1))`` (``r``
its score over the mean of the others'), every other parameter's gradient is unchanged, and a bad
value is refused when the config loads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.models.factory import instantiate_model
from deepseek.plugins.host import get_host
from deepseek_enterprise.digits.dataset import DigitsOptions, MultimodalDigits
from deepseek_enterprise.multimodal import MultimodalClassifier
from deepseek_enterprise.study_recipes import study_config

TINY = {"fusion_options": {"d_model": 16, "hidden": 32, "joint": True}, "vision": {"embed_dim": 16, "depths": [1, 1]},
        "audio": {"d_model": 16, "n_heads": 2, "n_layers": 1},
        "text": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}}
MODALITIES = ("vision", "audio", "text")

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(alpha: float) -> MultimodalClassifier:
    cls = get_host().resolve("model", "multimodal.classifier").load()
    return instantiate_model(cls, {**TINY, "fusion": "concat", "aux_loss_weight": 0.5, "gradient_modulation": alpha},
                             name="multimodal.classifier")


def _grads(model: MultimodalClassifier, batch: dict) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    model(**batch)["loss"].backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_the_dominant_modalitys_encoder_gradient_is_scaled_by_the_rule() -> None:
    torch.manual_seed(0)
    batch = MultimodalDigits(DigitsOptions(task="redundant", eval_size=64), batch_size=64, seed=0).split_batches("val")[0]
    # Every row labelled 3 and the audio classifier leaning to 3: audio dominates the batch.
    three = torch.full_like(batch["label"], 3)
    batch = {**batch, "label": three, "modality_labels": {m: three for m in MODALITIES}}
    plain = _model(0.0)
    with torch.no_grad():
        plain.fusion.heads["audio"].bias[3] += 1.0
    modulated = _model(0.5)
    modulated.load_state_dict(plain.state_dict())
    # The scores by hand: each head's mean probability of label 3 (every row has every modality).
    own = plain.eval().predict(batch).modality_logits
    score = {m: float(F.softmax(own[m], -1)[:, 3].mean()) for m in MODALITIES}
    ratio = {m: score[m] / ((sum(score.values()) - score[m]) / 2) for m in MODALITIES}
    factor = {m: 1 - math.tanh(0.5 * (ratio[m] - 1)) if ratio[m] > 1 else 1.0 for m in MODALITIES}
    assert 0.2 < factor["audio"] < 0.8  # the case tests something
    assert factor["vision"] == factor["text"] == 1.0

    before, after = _grads(plain, batch), _grads(modulated, batch)
    for name, grad in before.items():
        m = name.split(".")[1] if name.startswith("encoders.") else None
        expected = grad * factor[m] if m else grad
        torch.testing.assert_close(after[name], expected, rtol=1e-4, atol=1e-7, msg=name)
    audio = [n for n in before if n.startswith("encoders.audio.")]
    assert any(before[n].abs().max() > 1e-4 for n in audio)


def test_a_single_modality_is_unchanged() -> None:
    torch.manual_seed(1)
    batch = MultimodalDigits(DigitsOptions(task="redundant", eval_size=64), batch_size=64, seed=0).split_batches("val")[0]
    cls = get_host().resolve("model", "multimodal.classifier").load()
    keys = {**TINY, "modalities": ["audio"], "fusion": "late", "fusion_options": {"d_model": 16}, "aux_loss_weight": 0.5}
    plain = instantiate_model(cls, keys, name="multimodal.classifier")
    modulated = instantiate_model(cls, {**keys, "gradient_modulation": 5.0}, name="multimodal.classifier")
    modulated.load_state_dict(plain.state_dict())
    before, after = _grads(plain, batch), _grads(modulated, batch)
    for name, grad in before.items():
        torch.testing.assert_close(after[name], grad, msg=name)


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_a_bad_alpha_is_refused_naming_the_key(value: float) -> None:
    config = study_config("redundant", "concat", 0, 10, batch=8, lr=1e-3, device="cpu", runs_dir="/tmp/x",
                          recipe="balanced")
    config["model"]["gradient_modulation"] = value
    with pytest.raises(ConfigError, match=r"^model\.gradient_modulation: "):
        config_from_dict(config, host=get_host())


def test_the_balanced_recipes_set_it() -> None:
    for recipe in ("balanced", "pretrained-balanced"):
        config = study_config("redundant", "cross_attention", 0, 10, batch=8, lr=1e-3, device="cpu",
                              runs_dir="/tmp/x", recipe=recipe, sources={"audio": "runs/a"})
        assert config["model"]["gradient_modulation"] == 1.0
    assert "gradient_modulation" not in study_config("redundant", "cross_attention", 0, 10, batch=8, lr=1e-3,
                                                     device="cpu", runs_dir="/tmp/x")["model"]
