"""A component's table of another registered component's keys (``OPTIONS_OF``, as
``[model.fusion_options]``): checked by that component's ``Options`` when the config loads and
filled in with its defaults, so ``config show`` and the run's ``config.toml`` give every key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import tomllib

from deepseek import hookimpl
from deepseek.config.components import OPTIONS_OF
from deepseek.config.load import config_from_dict, dump_config
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@dataclass(frozen=True)
class WrapperOptions:
    encoder: str = "text.transformer"
    encoder_keys: dict[str, Any] = field(default_factory=lambda: {"d_model": 32, "n_heads": 2},
                                         metadata={OPTIONS_OF: lambda o: None if o.off else ("encoder", "encoder")})
    off: bool = False


class Wrapper:
    """Only its Options matter here: loading a config builds no model."""

    Options = WrapperOptions

    def __init__(self, options: WrapperOptions) -> None:
        self.options = options


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]
        register("acme.wrapper", Wrapper)


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1").status == "ok"
    return host


def load(host: PluginHost, **model: Any) -> Any:
    return config_from_dict({"model": {"name": "acme.wrapper", **model}}, host=host)


def test_the_table_is_filled_with_the_components_defaults(host: PluginHost) -> None:
    keys = load(host).model.options.encoder_keys
    assert (keys["d_model"], keys["n_heads"]) == (32, 2)  # given by the default table
    assert (keys["n_layers"], keys["max_seq_len"], keys["bias"]) == (4, 512, True)  # text.transformer's own
    shown = tomllib.loads(dump_config(load(host, encoder_keys={"n_layers": 1})))["model"]["encoder_keys"]
    assert shown["n_layers"] == 1 and shown["d_model"] == 256  # a table given replaces the default one
    assert load(host, encoder_keys=shown).model.options.encoder_keys == shown  # what is shown loads the same


@pytest.mark.parametrize(("model", "message"), [
    ({"encoder_keys": {"n_layer": 1}}, r"^model\.encoder_keys\.n_layer: unknown key \(did you mean 'n_layers'\?\)"),
    ({"encoder_keys": {"n_heads": "two"}}, r"^model\.encoder_keys\.n_heads: expected an integer"),
    ({"encoder": "text.transformr"}, r"^model\.encoder: unknown encoder 'text\.transformr'; did you mean "
                                     r"'text\.transformer'\?"),
])
def test_a_bad_table_or_name_is_one_line_naming_its_key(host: PluginHost, model: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(host, **model)
    assert "\n" not in str(info.value)


def test_a_table_not_in_use_is_left_as_given(host: PluginHost) -> None:
    options = load(host, off=True, encoder="nothing.registered", encoder_keys={"anything": 1}).model.options
    assert options.encoder_keys == {"anything": 1}
