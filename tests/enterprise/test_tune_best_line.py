"""The line ``deepseek tune`` ends with names the command that trains ``best.toml`` as the trials
trained: ``deepseek train`` for a strategy of one process, ``deepseek launch -n NPROC -- train``
for one that needs a launcher (``deepseek train`` refuses it), NPROC the tuner's ``[tuner] nproc``
where its ``Options`` declare it and ``N`` where they do not."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _tune_common import tiny_config

from deepseek import hookimpl
from deepseek_enterprise.tune.tuner import TrialRun, Tuner


@dataclass(frozen=True)
class WithNproc:
    nproc: int = 2


@dataclass(frozen=True)
class WithoutNproc:
    scale: float = 1.0


class Constant(Tuner):
    """A value from the config, no process: only the study's last line is under test."""

    Options = WithNproc
    objectives = ("distance",)

    def direction(self, objective: str) -> str:  # type: ignore[override]
        return "minimize"

    def run(self, trial: TrialRun) -> float:
        return trial.config.train.lr


class ConstantNoNproc(Constant):
    Options = WithoutNproc


class Plugin:
    def __init__(self, target: Any) -> None:
        self.target = target

    @hookimpl
    def deepseek_register_tuners(self, register):  # type: ignore[no-untyped-def]
        register("constant", self.target, description="the trial's learning rate")


def last_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str, tuner: Any, table: str) -> str:
    from _hosts import enterprise_host

    from deepseek.cli.main import main

    base = tiny_config(2).replace('name = "single"\ndevice = "cpu"', f'name = "{strategy}"')
    (tmp_path / "base.toml").write_text(base)
    (tmp_path / "space.toml").write_text('[space]\n"train.lr" = { choices = [0.001, 0.002] }\n' + table)
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        main(["tune", "base.toml", "--space", "space.toml", "--objective", "distance", "--study", "s",
              "--trials", "1", "--out", "st", "--no-baseline"], host=enterprise_host((Plugin(tuner), "deepseek-const")))
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr()
    finally:
        os.chdir(cwd)
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_one_process_strategy_trains_with_deepseek_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = last_line(tmp_path, capsys, "single", Constant, "")
    assert line.endswith("run it with: deepseek train st/best.toml"), line


def test_launcher_strategy_names_launch_with_the_tuners_nproc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = last_line(tmp_path, capsys, "ddp", Constant, "[tuner]\nnproc = 3\n")
    assert line.endswith("run it with: deepseek launch -n 3 -- train st/best.toml"), line


def test_launcher_strategy_without_nproc_option_names_n(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = last_line(tmp_path, capsys, "ddp", ConstantNoNproc, "")
    assert line.endswith("run it with: deepseek launch -n N -- train st/best.toml"), line
