"""``trainer.should_stop`` (Lightning's): a callback sets it and the run ends before the next step
as a complete run: its step saved as at the end, the result saying why (``ended_early``), no
signal recorded, and a resume of it (a requeued job) finds it complete and trains nothing;
early stopping says why the same way."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.errors import CheckpointError, PluginError, RunComplete
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.checkpoint import read_trainer_state
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer


class StopAtThree:
    AT = 3

    @hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if step == type(self).AT:
            trainer.should_stop = True


def test_a_callback_ends_the_run_as_complete(tiny_config_on: Any, tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAtThree(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 5})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert result.step == 3 and result.stopped_by is None
    assert result.ended_early == "trainer.should_stop was set by a callback"
    assert result.checkpoint == tmp_path / "run" / "checkpoints" / "step-3"  # saved as at the end
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]


@pytest.mark.parametrize(("at", "evaluated"), [(3, [0, 3]), (4, [0, 4])])  # 4: evaluated at its interval, once
def test_the_weights_a_callback_stopped_at_are_evaluated(tiny_config_on: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, at: int,
                                                         evaluated: list[int]) -> None:
    """As at the last step (and Lightning on ``should_stop``): the run's last validation figures
    are of the weights it ended with, which its last checkpoint holds."""
    monkeypatch.setattr(StopAtThree, "AT", at)
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAtThree(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 5})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if "val_loss" in r] == evaluated
    assert result.val_metrics["val_loss"] == next(r["val_loss"] for r in records if r.get("step") == at and "val_loss" in r)


class StopAtFiveScoringSteps(StopAtThree):
    """Stops at step 5 (a checkpoint step, not an evaluation step); every evaluation scores its step."""

    AT = 5

    @hookimpl
    def deepseek_evaluate(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        metrics["val_score"] = float(step)


def test_a_stop_at_a_saved_step_that_evaluates_best_marks_that_checkpoint_best(tiny_config_on: Any,
                                                                              tmp_path: Path) -> None:
    """Step 5 is saved at its interval before the callback's stop evaluates it; that evaluation is
    the best (``val_score`` = step, ``max``): step-5 is the best checkpoint, as the monitor says,
    not step-4 (whose weights are not the best ones)."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAtFiveScoringSteps(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4, "monitor": "val_score",
                                         "monitor_mode": "max"}, checkpoint={"interval": 5, "keep_best": True})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    root = tmp_path / "run" / "checkpoints"
    assert result.step == 5 and result.monitor["best_step"] == 5
    assert result.best_checkpoint == root / "step-5"
    assert (root / "best").read_text().strip() == "step-5"
    assert read_trainer_state(root / "step-5")["monitor"]["best_step"] == 5


class StopAtStart:
    @hookimpl
    def deepseek_train_start(self, trainer: Any) -> None:
        trainer.should_stop = True


def test_a_resume_a_callback_stops_before_any_step_does_not_evaluate_its_start_again(
        tiny_config_on: Any, tmp_path: Path) -> None:
    """The step a resume starts from was evaluated by the run that saved it (eval_interval 4)."""
    host = PluginHost(PluginSettings(autoload=False))
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 4})
    Trainer(config, run_dir=tmp_path / "first", quiet=True, host=host).fit()
    stopper = PluginHost(PluginSettings(autoload=False))
    assert stopper.register_plugin(StopAtStart(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(stopper, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 4})
    result = Trainer(config, run_dir=tmp_path / "second", resume=tmp_path / "first" / "checkpoints" / "step-4",
                     quiet=True, host=stopper).fit()
    assert result.step == 4 and result.ended_early == "trainer.should_stop was set by a callback"
    records = read_metrics(tmp_path / "second" / "metrics.jsonl") if (tmp_path / "second" / "metrics.jsonl").exists() else []
    assert [r["step"] for r in records if "val_loss" in r] == []


def test_early_stopping_says_why_it_ended(tiny_config_on: Any, tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    train = {"max_steps": 12, "eval_interval": 2, "monitor_mode": "max", "early_stop_patience": 2}
    result = Trainer(tiny_config_on(host, train=train), run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert result.step == 4 and result.stopped_by is None
    assert result.ended_early is not None and result.ended_early.startswith("early stopping: val_loss did not improve")


@pytest.mark.parametrize("at", [3, 5])  # 5: the step a checkpoint interval saved before the loop saw the flag
def test_a_run_a_callback_ended_resumes_as_complete(
        tiny_config_on: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    monkeypatch.setattr(StopAtThree, "AT", at)
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAtThree(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 5})
    run = tmp_path / "run"
    Trainer(config, run_dir=run, quiet=True, host=host).fit()
    saved = run / "checkpoints" / f"step-{at}"
    assert json.loads((saved / "trainer.json").read_text())["should_stop"] is True
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(RunComplete, match=rf"the run is complete, a callback ended it at step {at} "
                                          r"\(trainer.should_stop was set by a callback\); nothing to train") as done:
        Trainer(config, resume=run, quiet=True, host=host).fit()  # a requeued job: it trains no step past the stop
    assert (done.value.step, done.value.ended_early) == (at, "trainer.should_stop was set by a callback")
    assert (run / "metrics.jsonl").read_text() == before


def test_a_should_stop_field_other_than_true_is_a_damaged_checkpoint(tiny_config_on: Any, tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAtThree(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 5})
    Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    state_file = tmp_path / "run" / "checkpoints" / "step-3" / "trainer.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "should_stop": "yes"}))
    with pytest.raises(CheckpointError, match=r"trainer.json: should_stop is a string \('yes'\), expected true"):
        read_trainer_state(state_file.parent)  # the commit record's checksum refuses the edit before a resume reads it


class StopWith:
    VALUE: Any = "no"

    @hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if step == 2:
            trainer.should_stop = type(self).VALUE


@pytest.mark.parametrize("value, shown", [("no", r"'no' \(str\)"), (1, r"1 \(int\)"),
                                          ("tensor", r"tensor\(True\) \(Tensor\)")])
def test_should_stop_takes_a_bool_only(tiny_config_on: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       value: Any, shown: str) -> None:
    """A truthy string (``"no"`` ended the run), a number or a tensor is refused in one line naming
    the plugin and the hook that set it, at the step it was set; no checkpoint records the stop."""
    import torch

    monkeypatch.setattr(StopWith, "VALUE", torch.tensor(True) if value == "tensor" else value)
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopWith(), dist="deepseek-stopper", version="0.1.0").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 5})
    with pytest.raises(PluginError) as refused:
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    message = str(refused.value)
    assert "\n" not in message
    assert re.fullmatch(rf"deepseek-stopper 0\.1\.0: plugin '[^']+' \([^)]*\): deepseek_train_step_end: set "
                        rf"trainer\.should_stop to {shown}; it takes True \(end the run as complete before the next "
                        r"step\) or False; a bug in the plugin: fix it, or skip it with "
                        r"DEEPSEEK_DISABLE_PLUGINS=deepseek-stopper", message), message
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert steps == [1]  # refused at step 2, whose hook set it (its row is not logged, as for a hook that raises)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_should_stop_false_and_true_are_taken(tiny_config_on: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StopWith, "VALUE", False)
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopWith(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 3, "eval_interval": 4})
    assert Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit().step == 3


class StopAndSignal:
    """At step 3: SIGTERM to this very process and ``should_stop`` (a callback's stop and a
    preemption at the same step boundary; ``saved``: ``should_stop`` from the signal's save)."""

    SAVED = False

    @hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            trainer.should_stop = trainer.should_stop or not type(self).SAVED

    @hookimpl
    def deepseek_checkpoint_saved(self, trainer: Any, path: Path, step: int) -> None:
        if type(self).SAVED:
            trainer.should_stop = True


CLI = ["--max-steps", "8", "--run-dir", "run", "--quiet", "--set", "model.d_model=32", "--set", "model.n_heads=2",
       "--set", "model.n_layers=2", "--set", "model.max_seq_len=32", "--set", "data.seq_len=32",
       "--set", "data.batch_size=8", "--set", "data.eval_batches=1", "--set", "train.eval_interval=4",
       "--set", "train.warmup_steps=2", "--set", "logging.plot=false", "--set", "checkpoint.interval=0",
       "--set", 'strategy.name="single"', "--set", 'strategy.device="cpu"']


@pytest.mark.parametrize("saved", [False, True])  # True: the callback stops the run from the signal's save
def test_a_callback_stop_with_a_signal_at_the_same_step_is_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], saved: bool) -> None:
    """The callback's stop wins, as the last step does over a signal after it: exit code 0 (not 75,
    'resume me'), the step evaluated and its checkpoint recording the stop, and ``--resume`` finds
    the run complete (exit 0, nothing trained). It exited 75 while its checkpoint said complete."""
    from deepseek.cli.main import main

    monkeypatch.setattr(StopAndSignal, "SAVED", saved)
    monkeypatch.chdir(tmp_path)
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAndSignal(), dist="deepseek-stopper").status == "ok"
    with pytest.raises(SystemExit) as ended:
        main(["train", *CLI], host=host)
    err = capsys.readouterr().err
    assert ended.value.code in (0, None), err
    assert "stopped:" not in err
    run = tmp_path / "run"
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-3"]
    assert read_trainer_state(run / "checkpoints" / "step-3")["should_stop"] is True
    # evaluated as a callback's stop is (a signal's evaluates nothing), also when the stop came during the
    # signal's save (saved: the checkpoint is written again, after the evaluation)
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if "val_loss" in r] == [0, 3]
    assert read_trainer_state(run / "checkpoints" / "step-3")["metrics"]["val_loss"] == pytest.approx(
        [r["val_loss"] for r in read_metrics(run / "metrics.jsonl") if "val_loss" in r][-1])
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit) as again:
        main(["train", *CLI, "--resume", "run"], host=PluginHost(PluginSettings(autoload=False)))
    assert again.value.code in (0, None)
    assert "a callback ended it at step 3" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_text() == before


class StopWhenSaved:
    AT = 5

    @hookimpl
    def deepseek_checkpoint_saved(self, trainer: Any, path: Path, step: int) -> None:
        if step == type(self).AT:
            trainer.should_stop = True


@pytest.mark.parametrize("at", [5, 8])  # 5: saved by its interval; 8: the last step, saved at the end
def test_a_stop_set_after_its_steps_save_is_recorded(tiny_config_on: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    """``should_stop`` set by ``deepseek_checkpoint_saved``: the step's checkpoint was written
    before the flag, so it is written again recording the stop; a resume, even with more steps,
    trains nothing (it trained on to step 12)."""
    monkeypatch.setattr(StopWhenSaved, "AT", at)
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopWhenSaved(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 8, "eval_interval": 4}, checkpoint={"interval": 5})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert (result.step, result.ended_early, result.stopped_by) == (at, "trainer.should_stop was set by a callback", None)
    assert read_trainer_state(tmp_path / "run" / "checkpoints" / f"step-{at}")["should_stop"] is True
    plain = PluginHost(PluginSettings(autoload=False))
    longer = tiny_config_on(plain, train={"max_steps": 12, "eval_interval": 4}, checkpoint={"interval": 5})
    with pytest.raises(RunComplete, match=rf"a callback ended it at step {at} "):
        Trainer(longer, resume=tmp_path / "run", quiet=True, host=plain).fit()


class StopAtTheEnd:
    @hookimpl
    def deepseek_train_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        trainer.should_stop = True


def test_a_stop_set_in_train_end_is_not_recorded(tiny_config_on: Any, tmp_path: Path) -> None:
    """``deepseek_train_end`` runs once the run has ended (docs/plugins.md section 6): its
    ``should_stop`` changes nothing, is not in the result nor in the last checkpoint, and a resume
    with more steps trains on."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(StopAtTheEnd(), dist="deepseek-stopper").status == "ok"
    config = tiny_config_on(host, train={"max_steps": 2, "eval_interval": 0})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert (result.step, result.ended_early, result.stopped_by) == (2, None, None)
    assert "should_stop" not in read_trainer_state(tmp_path / "run" / "checkpoints" / "step-2")
    longer = tiny_config_on(host, train={"max_steps": 3, "eval_interval": 0})
    assert Trainer(longer, resume=tmp_path / "run", quiet=True, host=host).fit().step == 3
