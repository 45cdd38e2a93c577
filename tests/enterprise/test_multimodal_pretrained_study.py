"""The study's ``pretrained`` / ``frozen`` / ``stacked`` / ``calibrated`` recipes end to end: the
study trains the unimodal models first and hands their run folders on (a later study starts
from them with ``--unimodal-runs``), each row says what it started from, and unimodal runs the
study cannot use are one line before it writes anything. The models' own ``[model] pretrained``
/ ``freeze_pretrained`` are tested in test_multimodal_pretrained.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _inprocess import deepseek_here
from test_multimodal_pretrained import MODALITIES

from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.training.build import build_dataset, build_model
from deepseek.training.checkpoint import load_model_state, resolve_checkpoint
from deepseek_enterprise.calibration import with_logit_weights
from deepseek_enterprise.pretrained import modality_prefixes
from deepseek_enterprise.study import check_unimodal_run, run_study, split_metrics
from deepseek_enterprise.study_recipes import recipe_keys, recipe_label, run_order, study_config
from deepseek_enterprise.study_report import check_row, table

EVAL_SIZE = 64
"""The studies' validation and test samples (8 batches of 8; the default 1,024 is 128 batches per
full-split evaluation, which would be most of each study's time)."""

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_study_trains_unimodal_models_first_and_passes_them_on(tmp_path: Path) -> None:
    assert run_order(["cross_attention", "late", "vision"], "pretrained", "redundant") == [
        "vision", "audio", "text", "cross_attention", "late"]
    assert run_order(["cross_attention", "vision"], "joint", "redundant") == ["cross_attention", "vision"]
    # The complementary task's unimodal models learn the class (chance alone): nothing to start from.
    assert run_order(["concat"], "frozen", "complementary") == ["concat"]
    assert recipe_keys("concat", "pretrained", "complementary") == recipe_keys("concat", "joint", "complementary")
    sources = {m: f"runs/{m}" for m in MODALITIES}
    assert recipe_keys("concat", "frozen", "redundant", sources) == {
        "aux_loss_weight": 0.5, "modality_dropout": 0.2, "fusion_options": {"joint": True},
        "freeze_pretrained": True, "pretrained": sources}
    # late starts from them too; frozen, it is their ensemble (nothing trains: the study evaluates it as it starts).
    assert recipe_keys("late", "frozen", "redundant", sources) == {
        "aux_loss_weight": 0.5, "modality_dropout": 0.2, "freeze_pretrained": True, "pretrained": sources}
    assert recipe_keys("late", "joint", "redundant", sources) == {"aux_loss_weight": 0.5, "modality_dropout": 0.2}
    assert recipe_keys("vision", "frozen", "redundant", sources) == {}
    model = study_config("redundant", "cross_attention", 1, 10, batch=8, lr=1e-3, device="cpu", runs_dir="r",
                         recipe="pretrained", sources=sources)["model"]
    assert model["pretrained"] == sources and "freeze_pretrained" not in model


def test_a_frozen_study_row_says_what_it_started_from(tmp_path: Path) -> None:
    rows = run_study(["redundant"], [0], ["late", "concat"], 2, batch=8, lr=1e-3, device="cpu", eval_size=EVAL_SIZE, out=tmp_path,
                     recipe="frozen")
    assert [(r["config"], r["recipe"], r["steps"]) for r in rows] == [
        ("vision", None, 2), ("audio", None, 2), ("text", None, 2), ("late", "frozen", 0), ("concat", "frozen", 2)]
    runs = {m: str(tmp_path / "runs" / f"redundant-{m}-s0") for m in MODALITIES}
    assert rows[-1]["started_from"] == runs and rows[3]["started_from"] == runs
    # late, frozen: the ensemble of the unimodal models, evaluated as it starts (no run folder).
    assert not (tmp_path / "runs" / "redundant-late-s0").exists() and rows[3]["val_curve"] == []
    assert all(rows[3]["val"][f"val_accuracy_{m}"] == rows[i]["val"]["val_accuracy"] for i, m in enumerate(MODALITIES))
    assert set(rows[3]["missing"]) == set(MODALITIES) and 0 <= rows[3]["test"]["test_accuracy"] <= 1
    after = load_model_state(resolve_checkpoint(tmp_path / "runs" / "redundant-concat-s0"))
    for m in MODALITIES:
        theirs = load_model_state(resolve_checkpoint(runs[m]))
        assert all(torch.equal(after[k], theirs[k]) for k in after if k.startswith(modality_prefixes(m)))
        # The row's validation reads: a frozen head reads exactly as the unimodal model did.
        assert rows[-1]["val"][f"val_accuracy_{m}"] == rows[MODALITIES.index(m)]["val"]["val_accuracy"]
    # A later study starts from these unimodal runs instead of training its own.
    again = run_study(["redundant"], [0], ["concat"], 2, batch=8, lr=1e-3, device="cpu", eval_size=EVAL_SIZE, out=tmp_path / "again",
                      recipe="pretrained", unimodal_runs=tmp_path / "runs")
    assert [(r["config"], r["recipe"], r["started_from"]) for r in again] == [("concat", "pretrained", runs)]
    with pytest.raises(UsageError, match=r"^--unimodal-runs: .*redundant-vision-s1 is not a folder; pass the runs "
                                         r"folder of a study of the same seeds"):
        run_study(["redundant"], [1], ["concat"], 2, batch=8, lr=1e-3, device="cpu", out=tmp_path / "x",
                  recipe="frozen", unimodal_runs=tmp_path / "runs")
    assert not (tmp_path / "x").exists()


def test_a_stacked_study_fits_the_unimodal_models_and_the_fusion_on_the_other_part(tmp_path: Path) -> None:
    study = study_config("redundant", "concat", 0, 10, batch=8, lr=1e-3, device="cpu", runs_dir="r", recipe="stacked")
    assert study["data"]["train_sources"] == "blend" and study["model"]["freeze_pretrained"] is True
    assert study_config("redundant", "audio", 0, 10, batch=8, lr=1e-3, device="cpu", runs_dir="r",
                        recipe="stacked-residual")["data"]["train_sources"] == "fit"
    # On the complementary task stacked is joint, on the whole training split; frozen stays on all of it.
    assert "train_sources" not in study_config("complementary", "concat", 0, 10, batch=8, lr=1e-3, device="cpu",
                                               runs_dir="r", recipe="stacked")["data"]
    assert "train_sources" not in study_config("redundant", "vision", 0, 10, batch=8, lr=1e-3, device="cpu",
                                               runs_dir="r", recipe="frozen")["data"]
    rows = run_study(["redundant"], [0], ["late", "concat"], 2, batch=8, lr=1e-3, device="cpu", eval_size=EVAL_SIZE, out=tmp_path,
                     recipe="stacked")
    assert [(r["config"], r["recipe"], r["steps"], r["train_sources"]) for r in rows] == [
        ("vision", None, 2, "fit"), ("audio", None, 2, "fit"), ("text", None, 2, "fit"), ("late", "stacked", 0, "blend"),
        ("concat", "stacked", 2, "blend")]
    runs = {m: str(tmp_path / "runs" / f"redundant-{m}-s0") for m in MODALITIES}
    assert rows[-1]["started_from"] == runs and rows[3]["started_from"] == runs and rows[3]["val_curve"] == []
    for name, part in (("audio", "fit"), ("concat", "blend")):
        assert json.loads((tmp_path / "runs" / f"redundant-{name}-s0" / "splits.json").read_text())["train_sources"] == part
    after = load_model_state(resolve_checkpoint(tmp_path / "runs" / "redundant-concat-s0"))
    for m in MODALITIES:
        theirs = load_model_state(resolve_checkpoint(runs[m]))
        assert all(torch.equal(after[k], theirs[k]) for k in after if k.startswith(modality_prefixes(m)))
    assert "| vision (fit) |" in table(rows) and "| concat (stacked) |" in table(rows)
    assert recipe_label("vision", None) == "vision" and recipe_label("late", "stacked", "blend") == "late (stacked)"
    # stacked-residual starts from the same fit runs; a recipe that needs runs on the whole split refuses them.
    again = run_study(["redundant"], [0], ["concat"], 2, batch=8, lr=1e-3, device="cpu", eval_size=EVAL_SIZE, out=tmp_path / "again",
                      recipe="stacked-residual", unimodal_runs=tmp_path / "runs")
    assert [(r["config"], r["recipe"], r["started_from"], r["train_sources"]) for r in again] == [
        ("concat", "stacked-residual", runs, "blend")]
    assert recipe_keys("concat", "stacked-residual", "redundant", runs)["fusion_options"] == {
        "joint": True, "late_residual": True}
    # calibrated starts from the same fit runs, trains the fused models on fit too, then fits their
    # logit_weights on blend: the rows' figures are the model's with those weights.
    cal = run_study(["redundant"], [0], ["late", "concat"], 2, batch=8, lr=1e-3, device="cpu", eval_size=EVAL_SIZE, out=tmp_path / "cal",
                    recipe="calibrated", unimodal_runs=tmp_path / "runs")
    assert [(r["config"], r["recipe"], r["train_sources"]) for r in cal] == [
        ("late", "calibrated", "fit"), ("concat", "calibrated", "fit")]
    assert set(cal[0]["logit_weights"]) == set(MODALITIES) and set(cal[1]["logit_weights"]) == {"fused", *MODALITIES}
    cfg = config_from_dict(study_config("redundant", "concat", 0, 2, batch=8, lr=1e-3, device="cpu", runs_dir="r",
                                        recipe="calibrated", sources=runs, eval_size=EVAL_SIZE))
    model = build_model(cfg).eval()
    model.load_state_dict(load_model_state(resolve_checkpoint(tmp_path / "cal" / "runs" / "redundant-concat-s0")))
    data, limit = build_dataset(cfg, None), cfg.data.eval_batches
    assert split_metrics(model, data, torch.device("cpu"), "val", limit=limit)["val_accuracy"] == (
        cal[1]["before_calibration"]["val_accuracy"])
    with_logit_weights(model, cal[1]["logit_weights"])
    assert split_metrics(model, data, torch.device("cpu"), "val", limit=limit) == cal[1]["val"]
    assert "| concat (calibrated) |" in table(cal) and "| model | val before | val after |" in table(cal)
    assert check_row(cal[1]) is None
    with pytest.raises(UsageError, match=r"^--unimodal-runs: .*redundant-audio-s0 is a run of modalities \['audio'\], "
                                         r"not \['vision'\]; pass the runs folder of a study with --recipe calibrated"):
        check_unimodal_run(Path(runs["audio"]), "fit", "calibrated", "vision")
    with pytest.raises(UsageError, match=r"^--unimodal-runs: .* contains no complete checkpoint .*; pass the runs "
                                         r"folder of a study with --recipe calibrated --config vision"):
        check_unimodal_run(tmp_path / "cal", "fit", "calibrated", "vision")
    assert check_row({**cal[1], "logit_weights": {"speech": 1.0}}) == (
        "logit_weights must map fused and the model's modalities to finite numbers")
    with pytest.raises(UsageError, match=r"^--unimodal-runs: .*redundant-vision-s0 trained on data\.train_sources = "
                                         r"'fit', recipe frozen starts from unimodal models trained on 'all'; pass the "
                                         r"runs folder of a study with --recipe frozen --config vision"):
        run_study(["redundant"], [0], ["concat"], 2, batch=8, lr=1e-3, device="cpu", out=tmp_path / "x",
                  recipe="frozen", unimodal_runs=tmp_path / "runs")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--unimodal-runs", "."], "error: --unimodal-runs: recipe joint does not start from unimodal models; use it with "
                               "--recipe calibrated, frozen, pretrained, pretrained-balanced, stacked, stacked-residual, "
                               "or leave it out"),
    (["--recipe", "frozen", "--task", "redundant", "--seed", "3", "--config", "concat", "--unimodal-runs", "."],
     "error: --unimodal-runs: redundant-vision-s3 is not a folder; pass the runs folder of a study of the same seeds "
     "with --config vision --config audio --config text"),
])
def test_the_study_refuses_unimodal_runs_it_cannot_use(tmp_path: Path, args: list[str], message: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", *args, "--out", "res")
    assert code == 2 and err == message, err[-2000:]
    assert not (tmp_path / "res").exists()
