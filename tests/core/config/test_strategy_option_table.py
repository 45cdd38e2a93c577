"""``deepseek train --strategy NAME`` and the file's ``[strategy]`` keys, as docs/config.md says:
another strategy than the file's starts the table afresh (the file's ``device = "cpu"`` is
dropped, so the new strategy picks its own device), the file's own strategy keeps its keys, and
``--set strategy.name=NAME`` keeps them too. An outside author whose ``--strategy acme.x`` run
ignored the config's ``device = "cpu"`` found this nowhere in the docs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from deepseek import hookimpl
from deepseek.cli.train_cmd import build_train_config
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.single import SingleDeviceStrategy, SingleOptions

CONFIG_MD = Path(__file__).resolve().parents[3] / "docs" / "config.md"


@dataclass(frozen=True)
class CountingOptions(SingleOptions):
    every: int = 1
    """Count every this many steps."""


class Counting(SingleDeviceStrategy):
    name = "acme.counting"
    Options = CountingOptions


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.counting", Counting, description="single with a key of its own",
                 declares={"memory_rows": ["single"]})


def _host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-parallel").status == "ok"
    return host


def test_strategy_option_starts_another_strategys_table_afresh(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text('[strategy]\nname = "single"\ndevice = "cpu"\n', encoding="utf-8")
    host = _host()
    switched = build_train_config(str(toml), strategy="acme.counting", host=host).strategy
    assert (switched.name, switched.options.device, switched.options.every) == ("acme.counting", "auto", 1)
    kept = build_train_config(str(toml), strategy="single", host=host).strategy
    assert (kept.name, kept.options.device) == ("single", "cpu")
    renamed = build_train_config(str(toml), ("strategy.name=\"acme.counting\"",), host=host).strategy
    assert (renamed.name, renamed.options.device) == ("acme.counting", "cpu")

    toml.write_text('[strategy]\nname = "acme.counting"\ndevice = "cpu"\nevery = 3\n', encoding="utf-8")
    same = build_train_config(str(toml), strategy="acme.counting", host=host).strategy
    assert (same.options.device, same.options.every) == ("cpu", 3)


def test_config_md_says_what_strategy_keeps() -> None:
    page = " ".join(CONFIG_MD.read_text(encoding="utf-8").split())
    assert ("`--strategy NAME` naming another strategy than the file's starts `[strategy]` afresh with that "
            "strategy's defaults: the file's keys for its own strategy, `device = \"cpu\"` included, are dropped "
            "(`--set strategy.name=NAME` keeps them") in page


def test_train_help_says_it_too(capsys: pytest.CaptureFixture[str]) -> None:
    from deepseek.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"], host=_host())
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ("another one than the config's starts [strategy] from its defaults (--set strategy.name=NAME keeps the "
            "file's keys)") in text
