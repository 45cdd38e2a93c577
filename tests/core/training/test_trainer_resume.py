"""Exact resume on CPU: 20 steps straight equal 10 steps, stop, resume 10 more."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from deepseek import arguments, hookimpl
from deepseek.errors import ConfigError, RunComplete, UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

# Dropout on, so the RNG state has to be restored too, not only weights and data position.
RESUME = {
    "model": {"dropout": 0.1},
    "train": {"max_steps": 20, "eval_interval": 5, "warmup_steps": 3},
    "checkpoint": {"interval": 10, "keep_last": 5},
}


def _run(config, **kwargs) -> tuple[list[float], list[tuple[int, float]], Path]:
    result = Trainer(config, **kwargs).fit()
    return result.losses, result.val_losses, result.run_dir


def test_resume_from_mid_run_checkpoint_is_bit_identical(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(**RESUME)
    losses, vals, run = _run(config, run_dir=tmp_path / "straight")
    assert len(losses) == 20
    assert losses[-1] < losses[0]

    # A second run picks up the straight run's step-10 checkpoint in a run folder of its own.
    resumed, rvals, _ = _run(config, run_dir=tmp_path / "resumed", resume=run / "checkpoints" / "step-10")
    assert resumed == losses[10:]  # exact float equality, not a tolerance
    assert rvals == [v for v in vals if v[0] > 10]


def test_stop_and_resume_same_run_folder(tiny_config, tmp_path: Path) -> None:
    full = tiny_config(**RESUME)
    losses, _, _ = _run(full, run_dir=tmp_path / "straight")

    # Stop after 10 steps (same cosine length: decay_steps=20), then continue to 20 in place.
    first = tiny_config(**{**RESUME, "train": {**RESUME["train"], "max_steps": 10, "decay_steps": 20}})
    part1, _, run = _run(first, run_dir=tmp_path / "split")
    second = tiny_config(**{**RESUME, "train": {**RESUME["train"], "decay_steps": 20}})
    part2, _, run2 = _run(second, resume=run)
    assert run2 == run  # resuming a run folder continues in it
    assert part1 + part2 == losses

    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 21))  # no step logged twice
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-20"
    state = json.loads((run / "checkpoints" / "step-20" / "trainer.json").read_text())
    assert state["step"] == 20 and state["format_version"] == 1


def test_resume_at_max_steps_says_how_to_continue(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 2})
    _, _, run = _run(config, run_dir=tmp_path / "done")
    with pytest.raises(RunComplete, match=r"^resume='.*step-2': the run is complete.*raise train\.max_steps"):
        Trainer(config, resume=run).fit()
    with arguments.command_line():  # deepseek train's words (it sets this around its trainer)
        with pytest.raises(RunComplete, match=r"^--resume .*step-2: the run is complete.*raise --max-steps"):
            Trainer(config, resume=run).fit()


def test_a_complete_run_loses_what_a_killed_prune_left_and_nothing_else(tiny_config, tmp_path: Path) -> None:
    """A job SIGKILLed while it pruned, after its last checkpoint was committed, left a
    ``.trash-`` folder; the requeued job finds the run complete (it writes nothing) and left the
    folder there for good. It is removed now; every other file stays as it was."""
    config = tiny_config(train={"max_steps": 2})
    _, _, run = _run(config, run_dir=tmp_path / "done")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    trash = run / "checkpoints" / "step-1.trash-abcd"
    trash.mkdir()
    (trash / "model.safetensors").write_bytes(b"half")
    (run / "checkpoints" / ".latest.x1.tmp").write_text("step-1")
    with pytest.raises(RunComplete, match="the run is complete"):
        Trainer(config, resume=run).fit()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not trash.exists()


def test_resume_below_the_checkpoints_step_is_refused(tiny_config, tmp_path: Path) -> None:
    """Asking a run at step 2 for 1 step is a mistake (it exited 0 as 'complete')."""
    _, _, run = _run(tiny_config(train={"max_steps": 2}), run_dir=tmp_path / "done")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # from Python the message names the arguments of the call (it named the command line's --resume)
    with pytest.raises(ConfigError, match=r"^train\.max_steps: 1 is below step 2, where the checkpoint resume='"
                                          r".*step-2' already is; .* give train\.max_steps of at least 2, or start a "
                                          r"new run from its weights \(train\.init_from = \".*step-2\"\)$"):
        Trainer(tiny_config(train={"max_steps": 1}), resume=run).fit()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_folder_whose_job_died_before_its_first_checkpoint_is_started_afresh(tiny_config, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A job killed before its first checkpoint left metrics and a config but nothing to resume:
    the same command starts the run again in that folder (the docs' requeue script re-runs it
    without --resume), its metrics replacing the dead job's; a folder with a checkpoint is still
    refused without --resume."""
    config = tiny_config(**RESUME)
    losses, _, _ = _run(config, run_dir=tmp_path / "straight")
    dead = tmp_path / "dead"
    _run(tiny_config(train={"max_steps": 3}, checkpoint={"interval": 0, "at_end": False}), run_dir=dead)
    assert not list((dead / "checkpoints").glob("step-*")) and read_metrics(dead / "metrics.jsonl")
    # says what to do instead, and how to stay in this folder (a command without --run-dir starts a new one)
    with pytest.raises(UsageError, match="contains no complete checkpoint .*, so there is nothing to resume: .* "
                                         "leave out resume= to start the run afresh "
                                         rf"\(in this folder: run_dir={re.escape(repr(str(dead)))}\)$"):
        Trainer(config, resume=dead).fit()
    capsys.readouterr()
    again, _, run = _run(config, run_dir=dead)
    assert run == dead and again == losses
    assert "holds a run without a checkpoint (nothing to resume): starting it afresh" in capsys.readouterr().err
    steps = [r["step"] for r in read_metrics(dead / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 21))  # the dead job's steps 1-3 are gone, none logged twice
    with pytest.raises(UsageError, match=rf"already holds a run; continue it with resume={re.escape(repr(str(dead)))}, "
                       r"or pick another run_dir= / logging\.name$"):
        Trainer(config, run_dir=dead).fit()


@pytest.mark.parametrize(("name", "body"), [
    ("config.toml", "# my notes: keep\n[train]\nmax_steps = 1\n"),
    ("config.toml", "not toml ["),
    ("metrics.jsonl", '{"my": "experiment log"}\n'),
    ("metrics.jsonl", "plain text\n"),
])
def test_a_file_no_run_wrote_is_not_replaced_by_a_fresh_run(tiny_config, tmp_path: Path, name: str, body: str) -> None:
    """``deepseek train pj/config.toml --run-dir pj`` replaced the user's own config (comments and
    all) with the resolved one, exit 0; a metrics.jsonl of the user's was replaced likewise. Files
    a run wrote (a job that died before its first checkpoint) are still taken over."""
    folder = tmp_path / "pj"
    folder.mkdir()
    (folder / name).write_text(body, encoding="utf-8")
    with pytest.raises(UsageError, match=rf"pj/{name}: the run writes its {name} there, and this file is not one a run "
                                         r"wrote \(your own\?\); move it out of the folder, or pick another run_dir="):
        Trainer(tiny_config(train={"max_steps": 1}), run_dir=folder).fit()
    assert sorted(p.name for p in folder.iterdir()) == [name] and (folder / name).read_text() == body


class SetupDraws:
    """Draws from python's, numpy's and torch's generators once per process when training starts
    (as rich's first import does: ``getrandbits(24)`` when the progress bar first appears), and
    records a draw of each after every step (what a model or dataset drawing from them gets)."""

    def __init__(self) -> None:
        self.draws: list[tuple[int, float, float, float]] = []

    @hookimpl
    def deepseek_train_start(self, trainer):
        random.getrandbits(24)
        np.random.random_sample()
        torch.rand(1)

    @hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):
        self.draws.append((step, random.random(), float(np.random.random_sample()), float(torch.rand(1))))


def test_draws_the_set_up_made_after_reading_the_checkpoint_do_not_count_twice(tiny_config_on, tmp_path: Path) -> None:
    """The run that wrote the checkpoint drew in its set-up once; a resumed process draws again in
    its own set-up, after it had read the checkpoint's generator states. Those were put back only
    then: python's generator of a resumed run was one rich ``getrandbits`` ahead of the run's
    (the final checkpoints' rng-0.safetensors differed, and python-drawn values after the resume
    differed from the uninterrupted run's)."""
    def run(max_steps: int, **kwargs) -> tuple[SetupDraws, Path]:
        plugin, host = SetupDraws(), PluginHost(PluginSettings(autoload=False))
        host.register_plugin(plugin, dist="deepseek-setup-draws")
        config = tiny_config_on(host, train={"max_steps": max_steps, "decay_steps": 4, "warmup_steps": 1, "eval_interval": 0},
                                checkpoint={"interval": 2})
        return plugin, Trainer(config, host=host, **kwargs).fit().run_dir

    straight, run_a = run(4, run_dir=tmp_path / "straight")
    first, run_b = run(2, run_dir=tmp_path / "split")
    second, _ = run(4, resume=run_b)
    assert first.draws + second.draws == straight.draws
    a, b = (r / "checkpoints" / "step-4" / "rng-0.safetensors" for r in (run_a, run_b))
    assert a.read_bytes() == b.read_bytes()
