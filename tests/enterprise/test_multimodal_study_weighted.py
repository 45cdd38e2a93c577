"""``deepseek multimodal study --eval-logit-weights``: every fused model is also evaluated with
fixed ``logit_weights``; the figures in its row are those of the fused logits plus the modality
classifiers' logits as computed by hand from the run's checkpoint; ``study.json`` records the
weights (another study's folder is refused); the table shows them beside the model's own
figures; bad weights are one line (exit code 2) with nothing written. Every row names the machine
it was measured on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import pytest
import torch
from _inprocess import deepseek_here

from deepseek.config.load import config_from_dict
from deepseek.data.batch import move_to
from deepseek.errors import UsageError
from deepseek.training.build import build_dataset, build_model
from deepseek.training.checkpoint import load_model_state, resolve_checkpoint
from deepseek_enterprise.study import run_study, split_metrics
from deepseek_enterprise.study_recipes import study_config
from deepseek_enterprise.study_report import check_row, table

MODALITIES = ("vision", "audio", "text")
EVAL_SIZE = 64
ALL_ONE = {"fused": 1.0, "vision": 1.0, "audio": 1.0, "text": 1.0}

pytestmark = pytest.mark.usefixtures("one_thread")


def _by_hand(model: Any, batches: list[Any], weights: dict[str, float]) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Accuracy of ``sum_k w_k * logits_k`` (a modality's logits where the sample has it) computed
    from the model's uncalibrated outputs, with the predictions of that sum and of the fused
    logits alone."""
    right, total, summed, fused = 0, 0, [], []
    with torch.no_grad():
        for batch in batches:
            batch = move_to(batch, torch.device("cpu"))
            out = model.predict(batch, calibrated=False)
            logits = weights.get("fused", 0.0) * out.logits
            for m in MODALITIES:
                shown = batch["present"][m].bool().float().unsqueeze(-1)
                logits = logits + weights.get(m, 0.0) * out.modality_logits[m] * shown
            right += int((logits.argmax(-1) == batch["label"]).sum())
            total += len(batch["label"])
            summed.append(logits.argmax(-1))
            fused.append(out.logits.argmax(-1))
    return right / total, torch.cat(summed), torch.cat(fused)


def test_the_weighted_figures_are_the_summed_logits_of_the_checkpoint(tmp_path: Path) -> None:
    rows = run_study(["redundant"], [0], ["late", "concat"], 2, batch=8, lr=1e-3, device="cpu", eval_size=EVAL_SIZE,
                     out=tmp_path / "st", recipe="frozen", eval_logit_weights=ALL_ONE)
    late, concat = rows[3], rows[4]
    assert [r["config"] for r in rows] == [*MODALITIES, "late", "concat"]
    assert all("weighted" not in r for r in rows[:3])  # unimodal rows: nothing to weigh
    # What each row was measured on: the same code and seed give other figures on another CPU.
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    machine = {"cpu": cpu, "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "threads": 1, "torch": torch.__version__, "python": platform.python_version()}
    assert [r["machine"] for r in rows] == [machine] * 5  # trained rows and the ensemble (late) alike
    assert json.loads((tmp_path / "st" / "study.json").read_text())["eval_logit_weights"] == ALL_ONE
    runs = {m: str(tmp_path / "st" / "runs" / f"redundant-{m}-s0") for m in MODALITIES}
    cfg = config_from_dict(study_config("redundant", "concat", 0, 2, batch=8, lr=1e-3, device="cpu", runs_dir="r",
                                        recipe="frozen", sources=runs, eval_size=EVAL_SIZE))
    model = build_model(cfg).eval()
    model.load_state_dict(load_model_state(resolve_checkpoint(tmp_path / "st" / "runs" / "redundant-concat-s0")))
    data = build_dataset(cfg, None)
    val_batches = data.split_batches("val", cfg.data.eval_batches)
    test_batches = data.split_batches("test")
    val, val_summed, val_fused = _by_hand(model, val_batches, ALL_ONE)
    test, test_summed, test_fused = _by_hand(model, test_batches, ALL_ONE)
    assert concat["weighted"] == {"logit_weights": ALL_ONE, "val_accuracy": pytest.approx(val, abs=1e-12),
                                  "test_accuracy": pytest.approx(test, abs=1e-12)}
    # The sum predicts other classes than the fused head alone on some samples, so the figures
    # above tell the two apart; the row's own figures stay the fused head's.
    assert not torch.equal(torch.cat([val_summed, test_summed]), torch.cat([val_fused, test_fused]))
    assert concat["test"]["test_accuracy"] == pytest.approx(_by_hand(model, test_batches, {"fused": 1.0})[0], abs=1e-12)
    # "Without the weights" in the same evaluation: the trainer's last one on the same val batches.
    assert split_metrics(model, data, torch.device("cpu"), "val", limit=cfg.data.eval_batches)["val_accuracy"] == (
        concat["val"]["val_accuracy"])
    assert model.options.logit_weights == {}
    # late fusion's own output is the mean of the modalities' logits: fused 1 plus each modality 1
    # is that mean times (1 + 3), the same predictions as the ensemble.
    assert late["weighted"]["val_accuracy"] == late["val"]["val_accuracy"]
    assert late["weighted"]["test_accuracy"] == late["test"]["test_accuracy"]
    assert check_row(json.loads(json.dumps(concat))) is None
    shown = table(rows)
    assert "| model | weights | seeds | val | val weighted | test | test weighted |" in shown
    assert (f"| concat (frozen) | fused 1, vision 1, audio 1, text 1 | 1 | {100 * concat['val']['val_accuracy']:.1f} +- 0.0 "
            f"| {100 * val:.1f} +- 0.0 | {100 * concat['test']['test_accuracy']:.1f} +- 0.0 | {100 * test:.1f} +- 0.0 |"
            in shown)
    assert "| late (frozen) | fused 1, vision 1, audio 1, text 1 | 1 |" in shown
    assert "val weighted" not in table([{k: v for k, v in r.items() if k != "weighted"} for r in rows])

    # The same folder taken up with other weights, or none, is another study's: refused.
    with pytest.raises(UsageError, match=r"holds a study made with --eval-logit-weights fused=1,vision=1,audio=1,text=1 "
                                         r"\(not no --eval-logit-weights\); continue it with those, or pick a new --out"):
        run_study(["redundant"], [0], ["late", "concat"], 2, batch=8, lr=1e-3, device="cpu", eval_size=EVAL_SIZE,
                  out=tmp_path / "st", recipe="frozen")


@pytest.mark.parametrize(("weighted", "problem"), [
    ({"logit_weights": ALL_ONE, "val_accuracy": 0.5}, "weighted needs val_accuracy and test_accuracy in [0, 1]"),
    ({"logit_weights": ALL_ONE, "val_accuracy": 0.5, "test_accuracy": 1.5},
     "weighted needs val_accuracy and test_accuracy in [0, 1]"),
    ({"logit_weights": {"speech": 1.0}, "val_accuracy": 0.5, "test_accuracy": 0.5},
     "weighted.logit_weights: speech is not 'fused' or one of vision, audio, text"),
    ({"logit_weights": {"fused": "1"}, "val_accuracy": 0.5, "test_accuracy": 0.5},
     "weighted.logit_weights: fused = '1' is not a finite number"),
    ({"logit_weights": {"fused": 5000.0}, "val_accuracy": 0.5, "test_accuracy": 0.5},
     "weighted.logit_weights: fused = 5000 is outside [-1000, 1000] (fitted weights are near 1)"),
    ({"logit_weights": {}, "val_accuracy": 0.5, "test_accuracy": 0.5},
     "weighted.logit_weights: {} is not a table of weights"),
    ({"logit_weights": {"fused": 0, "audio": 0.0}, "val_accuracy": 0.5, "test_accuracy": 0.5},
     "weighted.logit_weights: every weight is 0: the logits would be 0 for every sample and every prediction class 0; "
     "give at least one nonzero weight (fused=1 is the model as trained)"),
])
def test_a_weighted_results_line_read_back_is_checked(weighted: dict[str, Any], problem: str) -> None:
    row = {"task": "redundant", "config": "concat", "seed": 0, "recipe": "frozen", "test": {"test_accuracy": 0.9},
           "missing": {m: 0.8 for m in MODALITIES}}
    assert check_row({**row, "weighted": {"logit_weights": ALL_ONE, "val_accuracy": 0.5, "test_accuracy": 0.5}}) is None
    assert check_row({**row, "weighted": weighted}) == problem
    unimodal = {"task": "redundant", "config": "audio", "seed": 0, "test": {"test_accuracy": 0.9}}
    assert check_row({**unimodal, "weighted": {"logit_weights": {"audio": 1.0}, "val_accuracy": 0.5,
                                               "test_accuracy": 0.5}}) == (
        "weighted is written for fused models only; a unimodal row (audio) has none")


@pytest.mark.parametrize(("args", "message"), [
    (["--eval-logit-weights", "fused=1,speech=1"], "error: --eval-logit-weights: speech is not 'fused' or a modality of "
                                                  "the study's fused models (vision, audio, text); name those only"),
    (["--eval-logit-weights", "fused=nan"], "error: --eval-logit-weights: fused='nan' is not a finite number; give e.g. "
                                            "fused=0.5"),
    (["--eval-logit-weights", "fused"], "error: --eval-logit-weights: 'fused' is not NAME=NUMBER; give e.g. "
                                        "fused=1.0,audio=0.4"),
    (["--eval-logit-weights", "audio=1,audio=2"], "error: --eval-logit-weights: audio is given twice; give each name once"),
    (["--eval-logit-weights", "fused=2000"], "error: --eval-logit-weights: fused=2000 is outside [-1000, 1000] (fitted "
                                             "weights are near 1)"),
    # taken: every fused model's weighted figures were class 0 for every sample
    (["--eval-logit-weights", "fused=0,text=0"], "error: --eval-logit-weights: every weight is 0: the logits would be 0 "
                                                 "for every sample and every prediction class 0; give at least one "
                                                 "nonzero weight (fused=1 is the model as trained)"),
    (["--config", "vision", "--config", "audio", "--eval-logit-weights", "fused=1"],
     "error: --eval-logit-weights: no fused model among --config vision audio to evaluate with them; add one of late, "
     "concat, cross_attention, or leave it out"),
])
def test_bad_eval_logit_weights_are_one_line_and_nothing_is_written(tmp_path: Path, args: list[str], message: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", *args, "--out", "res")
    assert code == 2 and err == message, err[-2000:]
    assert not (tmp_path / "res").exists()


def test_a_study_json_holding_bad_weights_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "res"
    out.mkdir()
    (out / "runs").mkdir()
    settings = {"steps": 2, "batch": 8, "lr": 1e-3, "device": "cpu", "recipe": "joint", "eval_size": None,
                "unimodal_runs": None, "base": None, "eval_logit_weights": {"speech": 1.0}}
    (out / "study.json").write_text(json.dumps(settings))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", "--task", "redundant", "--seed", "0",
                                 "--config", "concat", "--steps", "2", "--batch", "8", "--lr", "1e-3", "--device",
                                 "cpu", "--eval-logit-weights", "fused=1", "--out", "res")
    assert code == 2 and err == (
        "error: --out res: res/study.json holds eval_logit_weights = {'speech': 1.0}, not a value --eval-logit-weights "
        "takes (null or logit_weights of fused and the modalities, as --eval-logit-weights takes them); restore it, "
        "or pick a new --out"), err
    assert sorted(p.name for p in out.iterdir()) == ["runs", "study.json"]
