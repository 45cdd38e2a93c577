"""An evaluation of ``multimodal.classifier`` reports what it measured: a modality no evaluated
sample has gets no ``val_accuracy_<modality>`` (nor recall of its pairs) instead of 0, the loss
says which modality's terms it lacks (``val_loss_excludes_<modality>``), and a modality that only
some samples have is scored over those samples, however they fall into batches; ``deepseek eval``
(table and ``--json``), ``deepseek.evaluate`` and the run's own evaluations agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _inprocess import deepseek_here

import deepseek
from deepseek.models.factory import instantiate_model
from deepseek.plugins.host import get_host
from deepseek.training.evaluation import evaluate_in_process
from deepseek_enterprise.compare import per_example, whole_set
from deepseek_enterprise.digits.dataset import DigitsOptions, MultimodalDigits
from deepseek_enterprise.multimodal import IGNORE, MultimodalClassifier
from deepseek_enterprise.paired_bootstrap import draws, whole_set_bootstrap

TINY = {"fusion": "late", "fusion_options": {"d_model": 8}, "vision": {"embed_dim": 8, "depths": [1], "num_heads": [1]},
        "audio": {"d_model": 8, "n_heads": 2, "n_layers": 1},
        "text": {"d_model": 8, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}}
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**options: object) -> MultimodalClassifier:
    torch.manual_seed(0)
    cls = get_host().resolve("model", "multimodal.classifier").load()
    return instantiate_model(cls, {**TINY, **options}, name="multimodal.classifier").eval()


def _own_accuracy(model: MultimodalClassifier, batches: list[dict], modality: str) -> tuple[int, int]:
    """(right, scored) of ``modality``'s own classifier over the rows that have it and its label."""
    right = scored = 0
    for batch in batches:
        own = batch["modality_labels"][modality]
        has = batch["present"][modality] & (own != IGNORE)
        pred = model.predict(batch).modality_logits[modality].argmax(-1)
        right += int(((pred == own) & has).sum())
        scored += int(has.sum())
    return right, scored


def test_a_modality_no_sample_has_is_left_out_and_the_loss_says_so() -> None:
    model = _model(aux_loss_weight=0.5, contrastive_weight=0.1)
    data = MultimodalDigits(DigitsOptions(eval_size=24, missing=("audio",)), batch_size=8, seed=0)
    batches = data.split_batches("val")
    values = evaluate_in_process(model, batches, device=CPU, model_name="multimodal.classifier")
    # before: val_accuracy_audio 0.0, val_recall_vision_audio 0.0, val_recall_audio_text 0.0
    assert list(values) == ["val_loss", "val_accuracy", "val_accuracy_text", "val_accuracy_vision",
                            "val_loss_excludes_audio", "val_recall_vision_text"]
    assert values["val_loss_excludes_audio"] == pytest.approx((0.5 + 2 * 0.1) / 3)
    right, scored = _own_accuracy(model, batches, "vision")
    assert scored == 24 and values["val_accuracy_vision"] == pytest.approx(right / scored, abs=1e-12)
    # val_loss keeps its meaning per row (an absent modality's terms add 0): the model's own loss
    with torch.no_grad():
        losses = [float(model(**b)["loss"]) for b in batches]
    assert values["val_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)


def test_without_auxiliary_or_contrastive_terms_the_loss_lacks_nothing() -> None:
    model = _model()
    data = MultimodalDigits(DigitsOptions(eval_size=8, missing=("audio", "text")), batch_size=8, seed=0)
    values = evaluate_in_process(model, data.split_batches("val"), device=CPU, model_name="multimodal.classifier")
    assert sorted(values) == ["val_accuracy", "val_accuracy_vision", "val_loss"]
    assert "loss_excludes_audio" not in model.metric_names()


def test_a_modality_some_samples_have_is_scored_over_those_samples() -> None:
    """Audio in 2 rows of the first batch and in every row of the second: the accuracy over those
    10 samples, not the mean of the two batches' accuracies (which weighed 2 samples as 8)."""
    model = _model()
    data = MultimodalDigits(DigitsOptions(eval_size=16), batch_size=8, seed=0)
    first, second = data.split_batches("val")
    pred = model.predict(first).modality_logits["audio"].argmax(-1)
    hits = (pred == first["modality_labels"]["audio"]).nonzero().flatten().tolist()
    keep = (hits + [i for i in range(8) if i not in hits])[:2]  # rows the audio head gets right first
    audio = torch.zeros(8, dtype=torch.bool)
    audio[keep] = True
    first = {**first, "present": {**first["present"], "audio": audio}}
    values = evaluate_in_process(model, [first, second], device=CPU, model_name="multimodal.classifier")
    right, scored = _own_accuracy(model, [first, second], "audio")
    assert scored == 10 and values["val_accuracy_audio"] == pytest.approx(right / scored, abs=1e-12)
    per_batch = [_own_accuracy(model, [b], "audio") for b in (first, second)]
    old = sum(r / n for r, n in per_batch) / 2
    assert old != pytest.approx(right / scored)  # the figure the test exists for differs here


def test_compare_scores_a_modality_over_the_examples_that_have_it() -> None:
    """compare's accuracy_audio of each model is the mean over the rows that have audio (from the
    totals of all the examples), and a resample drawing none of them is skipped for it."""
    model_a, model_b = _model(), _model()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # another model: B
        for p in model_b.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    data = MultimodalDigits(DigitsOptions(eval_size=8), batch_size=8, seed=0)
    batch = data.split_batches("val")[0]
    audio = torch.tensor([1, 0, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    batch = {**batch, "present": {**batch["present"], "audio": audio}}
    name = "multimodal.classifier"
    ea, eb = per_example(model_a, [batch], name), per_example(model_b, [batch], name)
    found = whole_set_bootstrap(whole_set(model_a, ea, name, None), ea.totals, whole_set(model_b, eb, name, None),
                                eb.totals, resamples=2000, seed=3)
    assert "loss_excludes_audio" not in found  # audio is measured on the whole set
    right = {}
    for side, model in (("a", model_a), ("b", model_b)):
        right[side] = (model.predict(batch).modality_logits["audio"].argmax(-1)
                       == batch["modality_labels"]["audio"]).double()
        assert getattr(found["accuracy_audio"], side) == right[side][audio].mean().item()
    # helper-131's per-row values: the mean over rows having audio agrees; the interval differs
    # from a bootstrap of those rows alone: resamples are of all 8 examples, skipped without audio
    idx = np.concatenate(list(draws(8, 2000, 3)))
    has = audio.numpy()[idx]
    assert found["accuracy_audio"].resamples == int(has.any(axis=1).sum()) < 2000
    d = (right["b"] - right["a"]).numpy()[idx]
    by_hand = (d * has).sum(1)[has.any(1)] / has.sum(1)[has.any(1)]
    low, high = np.percentile(by_hand, [2.5, 97.5])
    assert (found["accuracy_audio"].low, found["accuracy_audio"].high) == pytest.approx((low, high), abs=1e-12)
    vision = found["accuracy_vision"]
    assert vision.resamples == 2000 and vision.a == pytest.approx(
        float((model_a.predict(batch).modality_logits["vision"].argmax(-1)
               == batch["modality_labels"]["vision"]).double().mean()), abs=1e-12)


TRAIN = """
[model]
name = "multimodal.classifier"
fusion = "late"
aux_loss_weight = 0.5
fusion_options = {d_model = 8}
vision = {embed_dim = 8, depths = [1], num_heads = [1]}
audio = {d_model = 8, n_heads = 2, n_layers = 1}
text = {d_model = 8, n_heads = 2, n_layers = 1, max_seq_len = 24}
[data]
name = "multimodal.digits"
batch_size = 8
eval_batches = 2
eval_size = 16
missing = ["audio"]
[train]
max_steps = 1
[strategy]
name = "single"
device = "cpu"
[logging]
plot = false
progress = false
"""


def test_eval_evaluate_and_the_run_report_the_same_measured_values(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mm.toml").write_text(TRAIN)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "mm.toml", "--run-dir", "run")
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "val_loss" in r][-1]
    code, err, out = deepseek_here(monkeypatch, tmp_path, "eval", "--checkpoint", "run", "--json")
    assert code == 0, err
    report = json.loads(out)
    values = {k: v for k, v in report.items() if k.startswith("val_")}
    assert list(values) == ["val_loss", "val_accuracy", "val_accuracy_text", "val_accuracy_vision",
                            "val_loss_excludes_audio"]
    assert values["val_loss_excludes_audio"] == pytest.approx(0.5 / 3)
    assert deepseek.evaluate(checkpoint=tmp_path / "run") == pytest.approx(values, rel=1e-6)
    assert {k: logged[k] for k in values} == pytest.approx(values, rel=1e-6)
    code, err, table = deepseek_here(monkeypatch, tmp_path, "eval", "--checkpoint", "run")
    assert code == 0 and "val_accuracy_audio" not in table and "val_loss_excludes_audio 0.1667" in table, err
    # the same weights on data with audio: audio is measured and the loss lacks nothing
    code, err, out = deepseek_here(monkeypatch, tmp_path, "eval", "--checkpoint", "run", "--set", "data.missing=[]",
                                   "--json")
    assert code == 0, err
    assert [k for k in json.loads(out) if k.startswith("val_")] == [
        "val_loss", "val_accuracy", "val_accuracy_audio", "val_accuracy_text", "val_accuracy_vision"]


def test_monitoring_the_accuracy_of_a_missing_modality_is_refused_before_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mm.toml").write_text(TRAIN)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "mm.toml", "--run-dir", "run",
                                 "--set", "train.monitor=val_accuracy_audio", "--set", "train.monitor_mode=max")
    assert code == 2 and err == (
        "error: train.monitor: 'val_accuracy_audio' is not an evaluation value of this run (did you mean "
        "'val_accuracy_vision'?); it reports val_accuracy, val_accuracy_text, val_accuracy_vision, val_loss, "
        "val_loss_excludes_audio"), err
    assert not (tmp_path / "run").exists()
