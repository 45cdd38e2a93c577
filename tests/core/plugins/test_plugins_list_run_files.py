"""``deepseek plugins list`` shows the files each distribution's components declare they write in
run folders, beside those its lifecycle hooks declare (``run files: ...``, test_declared_run_files.py):
a command's ``run_files`` always (read from its registration: nothing imported), a dataset's and
model's ``written_files`` with ``--written-files`` (their classes imported), with what is wrong with
them; in the table and in ``--json`` (``component_run_files``, ``run_file_problems``)."""

from __future__ import annotations

import json
import warnings
from typing import Any, ClassVar

import pytest

from deepseek import hookimpl
from deepseek.builtins.commands import EXPORT_FILES
from deepseek.cli.main import main
from deepseek.data.dataset import Dataset
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

READS: list[str] = []
"""The classes whose ``written_files`` a listing read, one entry a read."""


class _CountedReads(type(Dataset)):  # type: ignore[misc]  # Dataset's metaclass, counting
    @property
    def written_files(cls) -> tuple[str, ...]:
        READS.append(cls.__name__)
        return cls.__dict__["names"]


class Reports(Dataset, metaclass=_CountedReads):  # abstract: its class attribute is all a listing reads
    names = ("acme-report.json", "acme-plots/")


class Clashing(TrainableModel):
    written_files: ClassVar[tuple[str, ...]] = ("metrics.jsonl",)


class Plugin:
    """Registers its classes lazily (``'module:Class'``): a listing is what reads them (one
    registered as a class is read, and checked, when registered: test_written_files.py)."""

    @hookimpl
    def deepseek_register_commands(self, register: Any) -> None:
        register("acme-pack", "deepseek_acme.cli:pack", declares={"run_files": ["acme-pack.json", "acme-pack/"]})

    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.reports", f"{__name__}:Reports")
        register("acme.plain", Dataset)  # declares nothing: not listed

    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("acme.clashing", f"{__name__}:Clashing")


class Summarizing(TrainableModel, metaclass=_CountedReads):
    names = ("beta-summary.json", "acme-report.json")  # acme's dataset declares it first


class BetaPlugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("beta.summarizing", f"{__name__}:Summarizing")


def _list(capsys: pytest.CaptureFixture[str], *args: str, beta: bool = False) -> str:
    host = PluginHost(PluginSettings(autoload=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0").status == "ok"
        if beta:
            assert host.register_plugin(BetaPlugin(), dist="deepseek-beta", version="0.2.0").status == "ok"
    with pytest.raises(SystemExit) as exit_:
        main(["plugins", "list", *args], host=host)
    assert exit_.value.code == 0
    return capsys.readouterr().out


CLASH = (f"model {Clashing.__module__}.Clashing (deepseek-acme 0.1.0, registered as 'acme.clashing'): "
         "written_files names 'metrics.jsonl', which deepseek-core's trainer writes")


def test_json_gives_the_commands_files_and_with_the_option_the_classes(capsys: pytest.CaptureFixture[str]) -> None:
    records = {r["distribution"]: r for r in json.loads(_list(capsys, "--json"))}
    assert records["deepseek-acme"]["component_run_files"] == {"command": {"acme-pack": ["acme-pack.json", "acme-pack/"]}}
    assert "run_file_problems" not in records["deepseek-acme"]  # the classes were not read
    assert records["deepseek-core"]["component_run_files"] == {"command": {"export": list(EXPORT_FILES)}}

    records = {r["distribution"]: r for r in json.loads(_list(capsys, "--json", "--written-files"))}
    acme = records["deepseek-acme"]
    assert acme["component_run_files"] == {"command": {"acme-pack": ["acme-pack.json", "acme-pack/"]},
                                           "dataset": {"acme.reports": ["acme-report.json", "acme-plots/"]}}
    (problem,) = acme["run_file_problems"]
    assert problem.startswith(CLASH), problem
    assert records["deepseek-core"]["run_file_problems"] == []


def test_each_class_is_read_once_and_a_shared_name_is_both_distributions_problem(
        capsys: pytest.CaptureFixture[str]) -> None:
    READS.clear()
    records = {r["distribution"]: r for r in json.loads(_list(capsys, "--json", "--written-files", beta=True))}
    assert sorted(READS) == ["Reports", "Summarizing"]  # one listing, every distribution: each class once
    shared = (f"model 'beta.summarizing' (deepseek-beta 0.2.0, registered by {__name__}): written_files names "
              f"'acme-report.json', which dataset 'acme.reports' (deepseek-acme 0.1.0, registered by {__name__}) "
              "declares too")
    acme, beta = records["deepseek-acme"], records["deepseek-beta"]
    assert [p.startswith(CLASH) for p in acme["run_file_problems"]] == [False, True]  # datasets' lines first
    assert acme["run_file_problems"][0].startswith(shared), acme["run_file_problems"]
    assert beta["run_file_problems"] == acme["run_file_problems"][:1]
    assert beta["component_run_files"] == {"model": {"beta.summarizing": ["beta-summary.json", "acme-report.json"]}}
    assert records["deepseek-core"]["run_file_problems"] == []


def test_the_table_lists_them_under_the_components(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [line.split("│") for line in _list(capsys, "--written-files").splitlines() if "│" in line]
    components, status = (" ".join(" ".join(row[n].strip() for row in rows).split()) for n in (4, 5))  # unwrapped
    assert "run files (command export): model.pt2, model.onnx, model.onnx.data, hf/" in components
    assert "run files (command acme-pack): acme-pack.json, acme-pack/" in components
    assert "run files (dataset acme.reports): acme-report.json, acme-plots/" in components
    assert components.count("run files (") == 3  # acme.plain declares nothing; the clashing model's list is refused
    assert CLASH in status
