"""``model.num_classes`` of ``multimodal.classifier`` and the data's class count
(``Dataset.model_num_classes``: 10 for ``multimodal.digits``): left out it follows the data, set
below it or absurdly high it is one line naming the key, exit 2, before anything is built; and
the model declares the metrics its forward reports."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _inprocess import deepseek_here

import deepseek
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.models.checks import declared_metrics, split_output
from deepseek_enterprise.digits.dataset import MultimodalDigits

DIGITS = {"name": "multimodal.digits", "batch_size": 8, "eval_size": 16}


def _config(**model: object) -> object:
    return config_from_dict({"model": {"name": "multimodal.classifier", **model}, "data": DIGITS})


def test_num_classes_follows_the_data_and_may_be_larger() -> None:
    assert MultimodalDigits.model_num_classes(MultimodalDigits.Options()) == 10
    assert _config().model.options.num_classes == 10
    assert _config(num_classes=12).model.options.num_classes == 12


@pytest.mark.parametrize(("value", "message"), [
    (5, "model.num_classes: 5 is smaller than the 10 classes of dataset 'multimodal.digits' (its labels); remove "
        "model.num_classes to follow the data, or set it >= 10"),
    (10**12, "model.num_classes: must be in 2..100,000, got 1000000000000 (int)"),
])
def test_num_classes_that_cannot_hold_the_labels_or_is_huge_is_one_config_line(value: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(num_classes=value)
    assert str(caught.value) == message


def test_a_huge_num_classes_is_refused_by_train_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.toml").write_text('[model]\nname = "multimodal.classifier"\nnum_classes = 1000000000000\n'
                                     '[data]\nname = "multimodal.digits"\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "c.toml", "--run-dir", "run")
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "model.num_classes: must be in 2..100,000" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("options", "extra", "stated"), [
    ({}, [], []),
    ({"modalities": ["vision", "text"], "contrastive_weight": 0.1}, ["recall_vision_text"],
     ["loss_excludes_text", "loss_excludes_vision"]),
])
def test_the_declared_metrics_are_those_forward_reports(options: dict[str, object], extra: list[str],
                                                        stated: list[str]) -> None:
    """A training step and an evaluation with every modality report the declared metrics but
    ``loss_excludes_<modality>``, which an evaluation adds for a modality no sample has (where the
    loss has terms of it: here the contrastive ones)."""
    from deepseek.training.evaluation import evaluate_in_process

    torch.manual_seed(0)
    model = deepseek.create_model("multimodal.classifier", **options)
    data = deepseek.create_dataset("multimodal.digits", batch_size=8, seed=0, eval_size=16)
    batch = next(data)
    _, metrics = split_output(model(**batch))
    modalities = options.get("modalities", ["vision", "audio", "text"])
    expected = sorted(["accuracy", *(f"accuracy_{m}" for m in modalities), *extra])
    assert declared_metrics(model) == tuple(sorted(expected + stated))
    assert tuple(sorted(metrics)) == tuple(expected)
    values = evaluate_in_process(model, [batch], device=torch.device("cpu"), model_name="multimodal.classifier")
    assert list(values) == ["val_loss", *(f"val_{name}" for name in expected)]


def test_the_study_scores_every_row_of_a_split_that_ends_in_a_shorter_batch() -> None:
    """20 test samples at batch 8: batches of 8, 8 and 4, weighed by their rows (the study's
    split_metrics through deepseek.training.evaluation.evaluate_in_process)."""
    from deepseek_enterprise.study import split_metrics

    torch.manual_seed(0)
    model = deepseek.create_model("multimodal.classifier", modalities=["vision", "text"]).eval()
    data = deepseek.create_dataset("multimodal.digits", batch_size=8, seed=0, eval_size=20)
    batches = data.split_batches("test")
    assert [len(b["label"]) for b in batches] == [8, 8, 4]
    with torch.no_grad():
        right = torch.cat([model.serving_forward(model.serving_inputs(b)).argmax(-1) == b["label"] for b in batches])
    assert split_metrics(model, data, torch.device("cpu"), "test")["test_accuracy"] == pytest.approx(
        right.float().mean().item(), abs=1e-6)
