"""``deepseek tune --objective`` is checked before any trial against the values a run of the base
config reports (``deepseek.training.run_values``): a name the model's declared metrics do not
give is one line, exit 2, nothing written; a model that declares nothing is accepted as before,
and the system tuner's own objectives are unaffected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _inprocess import deepseek_here
from _tune_common import write

from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.training.run_values import config_values
from deepseek_enterprise.tune.training import TrainingTuner, TrainingTunerOptions

MULTIMODAL_BASE = '[model]\nname = "multimodal.classifier"\n[data]\nname = "multimodal.digits"\n'


def _tune(monkeypatch: pytest.MonkeyPatch, folder: Path, objective: str) -> tuple[int, str]:
    code, err, _ = deepseek_here(monkeypatch, folder, "tune", "base.toml", "--study", "b", "--space", "space.toml",
                                 "--trials", "1", "--out", "st", "--objective", objective)
    return code, err


@pytest.mark.parametrize(("base", "objective", "message"), [
    (None, "val_acuracy", "--objective val_acuracy: not a value a run of model 'tiny' on dataset 'text' reports; "
                          "its evaluations report val_loss, val_bits_per_byte"),
    (None, "val_accuracy", "--objective val_accuracy: not a value a run of model 'tiny' on dataset 'text' reports"),
    (MULTIMODAL_BASE, "val_acuracy", "--objective val_acuracy: not a value a run of model 'multimodal.classifier' on "
                                     "dataset 'multimodal.digits' reports (did you mean 'val_accuracy'?); its "
                                     "evaluations report val_loss, val_accuracy, val_accuracy_audio, "
                                     "val_accuracy_text, val_accuracy_vision"),
])
def test_an_objective_the_run_does_not_report_is_refused_before_any_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str | None, objective: str, message: str) -> None:
    write(tmp_path)
    if base is not None:
        (tmp_path / "base.toml").write_text(base)
        (tmp_path / "space.toml").write_text('[space]\n"train.warmup_steps" = { type = "int", low = 0, high = 10 }\n')
    code, err = _tune(monkeypatch, tmp_path, objective)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "st").exists()  # no study folder, no trial folder


def _config(model: dict[str, Any], data: dict[str, Any] | None = None) -> Any:
    return config_from_dict({"model": model, "data": data or {}, "train": {"max_steps": 2}})


def test_what_each_model_reports_is_accepted_and_an_undeclared_model_is_not_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tuner = TrainingTuner(TrainingTunerOptions())
    mm = _config({"name": "multimodal.classifier", "contrastive_weight": 0.1}, {"name": "multimodal.digits"})
    values = config_values(mm)
    assert values.complete and values.evaluation == (
        "val_loss", "val_accuracy", "val_accuracy_audio", "val_accuracy_text", "val_accuracy_vision",
        "val_loss_excludes_audio", "val_loss_excludes_text", "val_loss_excludes_vision",
        "val_recall_audio_text", "val_recall_vision_audio", "val_recall_vision_text")
    for name in values.evaluation:
        tuner.check_objective(name, mm, values)
    gpt = _config({"name": "tiny"})
    gpt_values = config_values(gpt)
    assert gpt_values.evaluation == ("val_loss", "val_bits_per_byte") and "val_perplexity" in gpt_values.command
    tuner.check_objective("val_bits_per_byte", gpt, gpt_values)
    with pytest.raises(UsageError, match="--objective val_accuracy: not a value"):
        tuner.check_objective("val_accuracy", gpt, gpt_values)
    # a model that declares no metrics (the default, None): any val_ name is accepted, as before
    from deepseek.models.gpt import GPT

    monkeypatch.setattr(GPT, "metric_names", lambda self: None)
    undeclared = config_values(gpt)
    assert not undeclared.complete
    tuner.check_objective("val_accuracy", gpt, undeclared)


def test_the_system_tuners_objectives_are_not_run_values() -> None:
    from deepseek_enterprise.tune.system import SystemTuner

    gpt = _config({"name": "tiny"})
    SystemTuner(SystemTuner.Options()).check_objective("tokens_per_s", gpt, config_values(gpt))


def test_a_metric_that_a_searched_model_option_turns_on_is_accepted(tmp_path: Path) -> None:
    """``recall_<a>_<b>`` is reported only with ``model.contrastive_weight``: an objective of it
    passes when the space searches that option, and is refused when nothing turns it on."""
    from deepseek_enterprise.tune.space import load_space
    from deepseek_enterprise.tune.study import check_study

    base = {"model": {"name": "multimodal.classifier"}, "data": {"name": "multimodal.digits"}}
    tuner = TrainingTuner(TrainingTunerOptions())
    objective = "val_recall_vision_audio"
    for searched, accepted in (('"model.contrastive_weight" = { choices = [0.0, 0.1] }', True),
                               ('"model.aux_loss_weight" = { choices = [0.0, 0.1] }', False)):
        (tmp_path / "space.toml").write_text(f"[space]\n{searched}\n")
        space = load_space(tmp_path / "space.toml")
        args = (tuner, space, base, config_from_dict, lambda config: None, objective, config_values)
        if accepted:
            check_study(*args)
        else:
            with pytest.raises(UsageError, match=f"--objective {objective}: not a value"):
                check_study(*args)


def test_a_base_config_without_validation_is_refused_before_any_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``data.eval_batches = 0`` (no evaluations): no trial could report a validation objective."""
    write(tmp_path)
    (tmp_path / "base.toml").write_text("[data]\neval_batches = 0\n[train]\nmax_steps = 2\n")
    code, err = _tune(monkeypatch, tmp_path, "val_loss")
    assert code == 2, err
    assert err.strip() == ("error: data.eval_batches: 0 turns validation off, but a training study judges each trial "
                           "by a validation value (--objective); set data.eval_batches >= 1"), err
    assert not (tmp_path / "st").exists()


def test_a_space_reaching_a_run_without_validation_is_refused_before_any_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A base config that validates, and a space whose choices reach ``data.eval_batches = 0``: such a
    trial could report no objective (it failed, after training); refused naming the space entry."""
    write(tmp_path)
    (tmp_path / "base.toml").write_text("[data]\neval_batches = 2\n[train]\nmax_steps = 2\n")
    (tmp_path / "space.toml").write_text('[space]\n"data.eval_batches" = { choices = [0, 2] }\n')
    code, err = _tune(monkeypatch, tmp_path, "val_loss")
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert "space.'data.eval_batches' = 0: data.eval_batches: 0 turns validation off, but a training study" in line, line
    assert not (tmp_path / "st").exists()
