"""A fresh run refused or failing before its first step in a folder that existed leaves that folder
as it found it (its ``config.toml``, ``metrics.jsonl`` and ``.lock`` were left behind: only a folder
the run created was removed), and a folder where the dataset's copy of a file goes is refused with
the run's other files, before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.data.text import TextDataset
from deepseek.errors import PluginError, UsageError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.trainer import Trainer


class WithVocab(TextDataset):
    """The embedded corpus, keeping a copy of a vocabulary file in the run folder."""

    SOURCE: Path

    def run_files(self) -> dict[str, Path]:
        return {"vocab.txt": self.SOURCE}


class BadlyDeclared(TextDataset):
    """Declares a file below a subfolder, which no output check could match."""

    written_files = ("reports/val.json",)


class Reporting(GPT):
    """A GPT whose plugin writes a report into the run folder after each evaluation."""

    written_files = ("report.json",)

    def __init__(self, options: GPTConfig) -> None:
        super().__init__(options)


class ReportingBadly(Reporting):
    written_files = ("../report.json",)  # type: ignore[assignment]


class Plugin:
    REFUSE = ""

    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("withvocab", WithVocab, description="text keeping vocab.txt")
        # lazily, as 'module:Class': checked where a run reads it (a class registered as a class is
        # checked when registered, its plugin refused: test_written_files.py)
        register("badlydeclared", f"{__name__}:BadlyDeclared", description="text declaring a path as a written file")

    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("reporting", Reporting, description="a GPT whose run writes report.json")
        register("reportingbadly", f"{__name__}:ReportingBadly", description="a GPT declaring a path as a written file")

    @hookimpl
    def deepseek_train_start(self, trainer: Any) -> None:
        if type(self).REFUSE:
            raise UsageError(type(self).REFUSE)


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    host.register_plugin(Plugin(), dist="deepseek-refuser")
    return host


def test_a_refusal_before_step_one_leaves_an_existing_folder_as_it_was(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    run = tmp_path / "existing"
    (run / "notes").mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    Plugin.REFUSE = "the folder is not fit for this run"
    try:
        with pytest.raises(UsageError, match="^the folder is not fit for this run$"):
            Trainer(tiny_config_on(host), run_dir=run, quiet=True, host=host).fit()
    finally:
        Plugin.REFUSE = ""
    assert sorted(p.name for p in run.iterdir()) == ["notes", "notes.txt"]  # no config.toml, metrics.jsonl, .lock
    assert (run / "notes.txt").read_text() == "mine"
    result = Trainer(tiny_config_on(host, train={"max_steps": 1}), run_dir=run, quiet=True, host=host).fit()
    assert result.step == 1 and (run / "config.toml").is_file() and (run / "notes.txt").read_text() == "mine"


def test_a_folder_where_the_dataset_keeps_a_copy_is_refused_with_the_run_files(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    WithVocab.SOURCE = tmp_path / "vocab.txt"
    WithVocab.SOURCE.write_text("a b c")
    run = tmp_path / "run"
    (run / "vocab.txt").mkdir(parents=True)
    with pytest.raises(UsageError, match=f"^{run / 'vocab.txt'}: is a folder where the run writes its vocab.txt; "
                       "move it away or pick another run_dir=$"):
        Trainer(tiny_config_on(host, data={"name": "withvocab"}), run_dir=run, quiet=True, host=host).fit()
    assert sorted(p.name for p in run.iterdir()) == ["vocab.txt"]


def test_a_written_file_that_is_not_a_plain_name_is_one_plugin_error(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    """Dataset.written_files names files directly in the run folder; a path is refused before the
    run folder is chosen, naming the class."""
    run = tmp_path / "run"
    with pytest.raises(PluginError, match=r"^dataset test_refused_run_folder.BadlyDeclared \(deepseek-refuser 0.0.0, "
                       r"registered as 'badlydeclared'\): written_files must be a tuple of names in the run folder "
                       r"\(no '/'; a folder's name ends in one: 'acme-plots/'\), got \('reports/val.json',\); fix the "
                       "class attribute$"):
        Trainer(tiny_config_on(host, data={"name": "badlydeclared"}), run_dir=run, quiet=True, host=host).fit()
    assert not run.exists()


def test_a_folder_where_the_model_writes_a_file_is_refused_with_the_run_files(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    """Models could not declare run files (only datasets could): a folder where the model's plugin
    writes its report was found only when the report was written, after training."""
    run = tmp_path / "run"
    (run / "report.json").mkdir(parents=True)
    with pytest.raises(UsageError, match=f"^{run / 'report.json'}: is a folder where the run writes its report.json; "
                       "move it away or pick another run_dir=$"):
        Trainer(tiny_config_on(host, model={"name": "reporting"}), run_dir=run, quiet=True, host=host).fit()
    assert sorted(p.name for p in run.iterdir()) == ["report.json"]


def test_a_model_written_file_that_is_not_a_plain_name_is_one_plugin_error(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(PluginError, match=r"^model test_refused_run_folder.ReportingBadly \(deepseek-refuser 0.0.0, "
                       r"registered as 'reportingbadly'\): written_files must be a tuple of names in the run folder "
                       r"\(no '/'; a folder's name ends in one: 'acme-plots/'\), got \('../report.json',\); fix the "
                       "class attribute$"):
        Trainer(tiny_config_on(host, model={"name": "reportingbadly"}), run_dir=run, quiet=True, host=host).fit()
    assert not run.exists()


def test_an_output_over_the_file_a_model_declares_is_refused(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    """A command's file output over the run's report.json (its model's written_files) is refused as
    one over its config.toml; another file in the folder stays the command's to write; the lookup
    is on the host passed in (a host without the model knows nothing of its files)."""
    from deepseek.paths import check_output

    run = tmp_path / "run"
    Trainer(tiny_config_on(host, model={"name": "reporting"}, train={"max_steps": 1, "warmup_steps": 0}),
            run_dir=run, quiet=True, host=host).fit()
    (run / "report.json").write_text("{}")
    (run / "mine.json").write_text("{}")
    with pytest.raises(UsageError, match=f"^--json: {run / 'report.json'} is a file of the run folder {run} "
                       f"\\(written by its training or the command that made it\\); give another path, e.g. "
                       f"{run / 'bench.json'}$"):
        check_output(run / "report.json", where="--json", folder=False, file_name="bench.json", host=host)
    assert check_output(run / "mine.json", where="--json", folder=False, host=host) == []
    bare = PluginHost(PluginSettings(autoload=False))
    assert check_output(run / "report.json", where="--json", folder=False, host=bare) == []
    with pytest.raises(TypeError, match="a file output needs host="):
        check_output(run / "mine.json", where="--json", folder=False)


def test_a_folder_where_the_run_keeps_its_lock_is_refused_with_the_run_files(
        host: PluginHost, tiny_config_on: Callable[..., Any], tmp_path: Path) -> None:
    """The run files had two lists, and the trainer's lacked .lock: a folder there was 'internal
    error: IsADirectoryError'. One list now (deepseek.run_files.RUN_FILES), one line."""
    run = tmp_path / "run"
    (run / ".lock").mkdir(parents=True)
    with pytest.raises(UsageError, match=f"^{run / '.lock'}: is a folder where the run writes its .lock; "
                       "move it away or pick another run_dir=$"):
        Trainer(tiny_config_on(host), run_dir=run, quiet=True, host=host).fit()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]
