"""pro's folder outputs, ``checkpoint export DST`` and ``launch --log-dir``, are checked with the
command's host: they knew only core's run files and checkpoints/, so a folder was made where a
plugin's lifecycle hooks (``deepseek_declare_run_files``) or a command write a file of the run."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


class _Callbacks:
    @hookimpl
    def deepseek_declare_run_files(self, declare: Any) -> None:
        declare(["acme-state.jsonl"])


@pytest.mark.parametrize("argv", [["checkpoint", "export", "SRC", "PLACE"],
                                  ["launch", "--log-dir", "PLACE", "--", "train"]])
def test_a_folder_output_in_the_place_of_a_plugins_run_file_is_refused(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro"})))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert host.register_plugin(_Callbacks(), dist="deepseek-acme").status == "ok"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text('[model]\nname = "gpt"\n')
    place = run / "acme-state.jsonl"
    with pytest.raises(SystemExit) as exit_:
        main([str(place) if a == "PLACE" else str(run) if a == "SRC" else a for a in argv], host=host)
    assert exit_.value.code == 2
    assert f"{place} is a place of the run folder {run}'s own files" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml"]
