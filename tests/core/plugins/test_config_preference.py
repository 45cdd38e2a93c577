"""A config's ``[plugins] prefer`` applies to that config's lookups only, never to the host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from plugin_testing import DistFactory, host_for

from deepseek import hookimpl
from deepseek.config.load import config_from_dict, load_config
from deepseek.errors import ComponentConflictError, ConfigError
from deepseek.plugins.host import PluginHost

# A strategy and a model under names another distribution uses too; each distribution's strategy
# has an option of its own, so the options a config gets show whose strategy it resolved.
CONFLICTING = """
from dataclasses import dataclass

from deepseek import hookimpl
from deepseek.training.single import SingleDeviceStrategy as Base


class Strategy(Base):
    @dataclass(frozen=True)
    class Options:
        {short}_knob: int = 1


class Build:
    @dataclass(frozen=True)
    class Options:
        {short}_width: int = 4

    def __call__(self, options):
        raise AssertionError("loading a config builds no model")


build = Build()


@hookimpl
def deepseek_register_strategies(register):
    register("dup.strategy", "{module}:Strategy", description="a strategy named like another's")


@hookimpl
def deepseek_register_models(register):
    register("dup.model", "{module}:build", description="a model named like another's")
"""


def _data(*prefer: str, **strategy: Any) -> dict[str, Any]:
    return {
        "plugins": {"prefer": list(prefer)},
        "model": {"name": "dup.model"},
        "strategy": {"name": "dup.strategy", **strategy},
    }


@pytest.fixture
def conflicting(make_dist: DistFactory) -> tuple[str, str]:
    """deepseek-aa and deepseek-bb, installed, both registering the same names."""
    for short in ("aa", "bb"):
        module = f"{short}_conflicting"
        make_dist(f"deepseek-{short}", {module: CONFLICTING.format(short=short, module=module)})
    return ("deepseek-aa", "deepseek-bb")


@pytest.fixture
def host(conflicting: tuple[str, str]) -> PluginHost:
    return host_for(*conflicting)


def test_config_prefer_picks_its_components_and_leaves_the_host_as_it_was(host: PluginHost) -> None:
    config = config_from_dict(_data("deepseek-bb", bb_knob=3), host=host)
    assert type(config.strategy.options).__module__ == "bb_conflicting"
    assert config.strategy.options.bb_knob == 3
    assert type(config.model.options).__module__ == "bb_conflicting"
    # The chosen components are recorded qualified: a later eval or --resume picks the same ones.
    assert (config.model.name, config.strategy.name) == ("deepseek-bb:dup.model", "deepseek-bb:dup.strategy")
    assert config_from_dict(config.to_dict(), host=host_for("deepseek-aa", "deepseek-bb")) == config
    # The host's own resolution is unchanged: the conflict still needs a choice.
    assert host.preference() == () and host.config_prefer == ()
    with pytest.raises(ComponentConflictError, match="registered by both deepseek-aa"):
        host.resolve("strategy", "dup.strategy")
    with pytest.raises(ComponentConflictError):
        host.resolve("model", "dup.model")
    # Another config on the same host gets its own precedence, not the last one loaded.
    other = config_from_dict(_data("aa"), host=host)
    assert type(other.strategy.options).__module__ == "aa_conflicting"
    with pytest.raises(ConfigError, match=r"strategy\.bb_knob: unknown key"):
        config_from_dict(_data("deepseek-aa", bb_knob=3), host=host)


def test_without_prefer_the_config_names_the_conflict(host: PluginHost) -> None:
    with pytest.raises(ConfigError, match=r"^model\.name: model 'dup\.model' is registered by both deepseek-aa"):
        config_from_dict(_data(), host=host)
    with pytest.raises(ConfigError, match=r"^strategy\.name: strategy 'dup\.strategy' is registered by both"):
        config_from_dict({**_data(), "model": {"name": "tiny"}}, host=host)


def test_environment_precedence_comes_before_the_config(conflicting: tuple[str, str]) -> None:
    env_first = host_for(*conflicting, prefer=("deepseek-aa",))
    config = config_from_dict(_data("deepseek-bb"), host=env_first)
    assert type(config.strategy.options).__module__ == "aa_conflicting"


def test_load_config_takes_the_host_and_the_validate_hook_runs_on_it(host: PluginHost, tmp_path: Path) -> None:
    seen = []

    class Validator:
        @hookimpl
        def deepseek_validate_config(self, config: Any) -> None:
            seen.append(config.strategy.name)

    host.register_plugin(Validator(), dist="deepseek-validator")
    path = tmp_path / "run.toml"
    path.write_text('[plugins]\nprefer = ["bb"]\n[model]\nname = "dup.model"\n[strategy]\nname = "dup.strategy"\n')
    config = load_config(path, ["strategy.bb_knob=2"], host=host)
    assert config.strategy.options.bb_knob == 2 and seen == ["deepseek-bb:dup.strategy"]
    load_config(path, host=host, validate=False)
    assert seen == ["deepseek-bb:dup.strategy"]
