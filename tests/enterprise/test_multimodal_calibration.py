"""``[model] logit_weights`` and their fitting (``deepseek_enterprise.calibration``): the
calibrated output is exactly the weighted sum of the fused and the present modalities' logits,
the fit recovers known weights, bad weights are one line, and ``deepseek train`` takes them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepseek.errors import ConfigError
from deepseek.models.factory import instantiate_model
from deepseek.plugins.host import get_host
from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint
from deepseek_enterprise.calibration import (
    calibration_batches,
    calibration_keys,
    collect_logits,
    fit_logit_weights,
    fit_weights,
    with_logit_weights,
)
from deepseek_enterprise.digits.dataset import DigitsOptions, MultimodalDigits
from deepseek_enterprise.multimodal import MultimodalClassifier

TINY = {"vision": {"embed_dim": 16, "depths": [1, 1]},
        "audio": {"d_model": 16, "n_heads": 2, "n_layers": 1},
        "text": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}}


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**options: object) -> MultimodalClassifier:
    cls = get_host().resolve("model", "multimodal.classifier").load()
    torch.manual_seed(0)
    head = {} if options.get("fusion") == "late" else {"hidden": 16}
    return instantiate_model(cls, {**TINY, "fusion_options": {"d_model": 16, **head}, **options},
                             name="multimodal.classifier").eval()


def _batch() -> dict:
    return MultimodalDigits(DigitsOptions(task="redundant", eval_size=32), batch_size=32, seed=0).split_batches("val")[0]


def test_the_calibrated_output_is_the_weighted_sum_of_present_logits() -> None:
    model, batch = _model(fusion="concat"), _batch()
    raw = model.predict(batch)
    weights = {"fused": 0.5, "vision": 2.0, "audio": -0.25}  # text left out: weight 0
    calibrated = with_logit_weights(_model(fusion="concat"), weights)
    batch["present"]["audio"][:5] = False  # these samples' audio contributes nothing
    out = calibrated.predict(batch)
    audio_kept = batch["present"]["audio"].float().unsqueeze(-1)
    raw = model.predict(batch)
    expected = 0.5 * raw.logits + 2.0 * raw.modality_logits["vision"] - 0.25 * raw.modality_logits["audio"] * audio_kept
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(calibrated.predict(batch, calibrated=False).logits, raw.logits)
    # The loss and accuracy the trainer sees are the calibrated ones.
    with torch.no_grad():
        result = calibrated(**batch)
    torch.testing.assert_close(result["logits"], expected)
    # fused = 1 alone is the model as it was.
    same = with_logit_weights(_model(fusion="concat"), {"fused": 1.0}).predict(batch)
    torch.testing.assert_close(same.logits, raw.logits)


@pytest.mark.parametrize(("weights", "message"), [
    ({"speech": 1.0}, "model.logit_weights.speech: not 'fused' or a modality of this model (['vision', 'audio', 'text']); "
                      "name those only"),
    ({"audio": float("nan")}, "model.logit_weights.audio: must be a finite number, got nan; give a finite value"),
    ({"fused": True}, "model.logit_weights.fused: expected a number, got True (bool)"),
    ({"fused": "1"}, "model.logit_weights.fused: expected a number, got '1' (str)"),
    # every prediction was class 0
    ({"fused": 0.0, "audio": -0.0}, "model.logit_weights: every weight is 0: the logits would be 0 for every sample "
                                    "and every prediction class 0; give at least one nonzero weight (fused=1 is the "
                                    "model as trained)"),
])
def test_bad_logit_weights_are_one_line(weights: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _model(fusion="concat", logit_weights=weights)
    assert str(info.value) == message


def test_the_fit_recovers_known_weights() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6000, 3, 10, generator=gen) * 2
    true = torch.tensor([1.5, 0.2, -0.5])
    labels = torch.multinomial((logits * true[None, :, None]).sum(1).softmax(-1), 1, generator=gen).squeeze(1)
    fitted = fit_weights(logits, labels, ["fused", "vision", "audio"])
    assert list(fitted) == ["fused", "vision", "audio"]
    assert torch.allclose(torch.tensor(list(fitted.values())), true, atol=0.12), fitted
    # Late fusion has no output of its own: only the modalities are weighted.
    assert calibration_keys(_model(fusion="late")) == ["vision", "audio", "text"]
    assert calibration_keys(_model(fusion="cross_attention")) == ["fused", "vision", "audio", "text"]


def test_fitting_a_model_keeps_its_parameters_and_lowers_the_loss_on_the_fitted_batches() -> None:
    model = _model(fusion="late")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = DigitsOptions(task="redundant", train_sources="blend")
    batches = calibration_batches(data, part="blend", batches=3, batch_size=32, seed=0)
    # Audio made misleading on these batches: the fit must trust it less than the other modalities.
    for b in batches:
        b["audio"]["inputs"] = b["audio"]["inputs"][torch.randperm(32, generator=torch.Generator().manual_seed(1))]
    weights = fit_logit_weights(model, batches, torch.device("cpu"))
    assert set(weights) == {"vision", "audio", "text"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    logits, labels = collect_logits(model, batches, torch.device("cpu"))
    uncalibrated = torch.nn.functional.cross_entropy(logits.sum(1), labels)
    w = torch.tensor([weights[k] for k in ("vision", "audio", "text")])
    calibrated = torch.nn.functional.cross_entropy((logits * w[None, :, None]).sum(1), labels)
    assert calibrated < uncalibrated
    assert model.options.logit_weights == {}  # fitting does not set them; with_logit_weights does
    assert dataclasses.replace(model.options, logit_weights=weights).logit_weights == weights


def test_deepseek_train_takes_logit_weights_from_the_config(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[model]\nname = "multimodal.classifier"\nfusion = "late"\nlogit_weights = {vision = 1.0, audio = 0.4}\n'
        'vision = {embed_dim = 16, depths = [1, 1]}\naudio = {d_model = 16, n_heads = 2, n_layers = 1}\n'
        'text = {d_model = 16, n_heads = 2, n_layers = 1, max_seq_len = 24}\n'
        '[data]\nname = "multimodal.digits"\nbatch_size = 8\neval_batches = 1\neval_size = 8\n'
        '[train]\nmax_steps = 1\nwarmup_steps = 1\neval_interval = 1\n[logging]\nprogress = false\nplot = false\n'
        'name = "cal"\n', encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "deepseek", "train", str(toml), "--set", "strategy.device=cpu"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    recorded = read_trainer_state(resolve_checkpoint(tmp_path / "runs" / "cal"))["config"]["model"]
    assert recorded["logit_weights"] == {"vision": 1.0, "audio": 0.4}
    bad = subprocess.run([sys.executable, "-m", "deepseek", "train", str(toml), "--set", "strategy.device=cpu",
                          "--set", "model.logit_weights.speech=1.0", "--set", "logging.name=bad"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "model.logit_weights.speech: not 'fused' or a modality" in bad.stderr
    assert not (tmp_path / "runs" / "bad").exists()
