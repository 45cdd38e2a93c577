"""The trainer's own public calls that reach the model (``evaluate``, ``save_checkpoint``) ask the strategy first
(:func:`deepseek.training.outside_fit.held_strategy`): before ``fit`` there is none (was an AttributeError on
``trainer.engine`` and a bare assert), and core's ``Strategy.engine_held`` refuses nothing, so under ``single`` they
still answer after ``fit`` (a distributed strategy's refusal: tests/pro/test_released_engine.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.training.metrics import read_metrics
from deepseek.training.run_lock import LOCK_FILE, RunFolderBusy, try_lock, unlock, write_holder
from deepseek.training.trainer import Trainer

CONFIG = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1},
    "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 1, "warmup_steps": 0, "eval_interval": 1},
    "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False},
}


def test_before_fit_each_call_is_one_line_naming_it(tmp_path: Path) -> None:
    trainer = Trainer(config_from_dict(CONFIG), run_dir=tmp_path / "run", quiet=True)
    for call, run in [("evaluate()", trainer.evaluate), ("save_checkpoint()", trainer.save_checkpoint)]:
        with pytest.raises(UsageError) as refused:
            run()
        assert str(refused.value) == (
            f"trainer.{call} before fit(): fit() sets up the strategy and the model; call it while fit() runs "
            "(from a deepseek_train_step_end or deepseek_train_end hook)")
    assert not (tmp_path / "run").exists()  # nothing made


def test_under_single_they_still_answer_after_fit(tmp_path: Path) -> None:
    trainer = Trainer(config_from_dict(CONFIG), run_dir=tmp_path / "run", quiet=True)
    trainer.fit()
    assert trainer.strategy is not None
    trainer.strategy.engine_held("trainer.evaluate()")  # core's default: nothing to refuse
    assert trainer.evaluate() == trainer.last_eval  # the trained model, evaluated again: the same numbers


def test_what_needs_no_engine_is_one_line_before_fit_and_answers_after(tmp_path: Path) -> None:
    """``trainer_state()`` and ``read_every()`` were a bare assert before fit; they read what fit set up, so after it
    they answer (the other public members: properties that are ``None``/``True`` before fit, and fit itself)."""
    trainer = Trainer(config_from_dict(CONFIG), run_dir=tmp_path / "run", quiet=True)
    for call, run in [("trainer_state()", trainer.trainer_state), ("read_every()", trainer.read_every)]:
        with pytest.raises(UsageError) as refused:
            run()
        assert str(refused.value) == (f"trainer.{call} before fit(): fit() sets up the strategy and the model; "
                                      "call it while fit() runs or after it returns")
    assert (trainer.model, trainer.optimizer, trainer.epochs_done, trainer.is_global_zero) == (None, None, None, True)
    assert not (tmp_path / "run").exists()
    trainer.fit()
    assert trainer.read_every() == 1  # the CPU's default
    state = trainer.trainer_state()
    assert (state["step"], state["samples_seen"], state["strategy"]) == (1, 4, "single")


def _no_checkpoint_at_end() -> dict:
    return {**CONFIG, "checkpoint": {"at_end": False, "interval": 0}}


def test_save_after_fit_takes_the_folder_lock_again_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(config_from_dict(_no_checkpoint_at_end()), run_dir=run, quiet=True)
    trainer.fit()
    assert not (run / "checkpoints" / "step-1").exists()
    saved = trainer.save_checkpoint()
    assert saved == run / "checkpoints" / "step-1" and saved.is_dir()
    fd = try_lock(run / LOCK_FILE)  # given back after the write
    assert fd is not None
    unlock(fd)
    longer = {**_no_checkpoint_at_end(), "train": {**CONFIG["train"], "max_steps": 2}}
    resumed = Trainer(config_from_dict(longer), resume=run, quiet=True).fit()
    assert resumed.resumed_at == 1 and resumed.step == 2
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r] == [1, 2]


def test_save_after_fit_refused_in_one_line_while_another_job_holds_the_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(config_from_dict(_no_checkpoint_at_end()), run_dir=run, quiet=True)
    trainer.fit()
    before = sorted(p.name for p in run.rglob("*"))
    fd = try_lock(run / LOCK_FILE)  # another job took the folder since fit gave it back
    assert fd is not None
    try:
        write_holder(fd)
        with pytest.raises(RunFolderBusy) as refused:
            trainer.save_checkpoint()
    finally:
        unlock(fd)
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"run folder {run} is in use by another live job (")
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written, not even a temp folder
    assert trainer.last_checkpoint is None


def test_save_after_a_fit_that_failed_before_the_folder_opened_is_one_line(tmp_path: Path) -> None:
    Trainer(config_from_dict(CONFIG), run_dir=tmp_path / "run", quiet=True).fit()
    second = Trainer(config_from_dict(CONFIG), run_dir=tmp_path / "run", quiet=True)
    with pytest.raises(UsageError, match="resume="):  # the folder holds a run: refused in set-up, before it opens
        second.fit()
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(UsageError) as refused:
        second.save_checkpoint()
    assert str(refused.value).startswith("trainer.save_checkpoint() after fit() failed before it opened the run folder")
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before
