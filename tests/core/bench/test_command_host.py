"""``deepseek bench latency`` and ``bench train`` build their model on the command's plugin host
(``main(host=...)``, :func:`deepseek.cli.context.command_host`), not the process's: a model a plugin
registers on that host only is found, and a model that builds its parts itself
(:class:`~deepseek.models.protocol.BuildsComponents`) gets that host to build them on."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.models.factory import registered_model
from deepseek.models.presets import TinyOptions
from deepseek.models.protocol import BuildsComponents
from deepseek.plugins.host import PluginHost, get_host
from deepseek.plugins.settings import PluginSettings


class _Parts(BuildsComponents):
    """A model target that builds its GPT from ``acme.gpt``, a model registered on the host it is
    given: on any other host that name is unknown."""

    Options = TinyOptions

    def __init__(self) -> None:
        self.hosts: list[Any] = []

    def __call__(self, options: TinyOptions, host: Any) -> Any:
        self.hosts.append(host)
        return registered_model(host, "acme.gpt", options)


@pytest.fixture
def acme() -> tuple[PluginHost, _Parts]:
    """A host with core's built-ins and ``deepseek-acme``'s two models, registered on it alone."""
    parts = _Parts()

    class Plugin:
        @hookimpl
        def deepseek_register_models(self, register: Any) -> None:
            register("acme.gpt", "deepseek.models.presets:tiny")
            register("acme.parts", parts)

    host = PluginHost(PluginSettings(autoload=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0")
    assert record.status == "ok", record.reason
    assert "acme.gpt" not in get_host().names("model")  # the process's host does not know it
    return host, parts


@pytest.mark.parametrize("model", ["acme.gpt", "acme.parts"])
def test_bench_latency_times_a_model_registered_on_the_commands_host(
        model: str, acme: tuple[PluginHost, _Parts], tmp_path: Path) -> None:
    host, parts = acme
    out = tmp_path / "latency.json"
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "latency", "--model", model, "--seq", "8", "--runs", "20", "--warmup", "1", "--only", "eager",
              "--json", str(out)], host=host)
    assert exit_.value.code in (0, None)
    data = json.loads(out.read_text())
    assert data["info"]["model"] == model and [r["name"] for r in data["rows"]] == ["eager"]
    assert data["rows"][0]["max_rel_error"] == 0.0
    assert parts.hosts == ([host] if model == "acme.parts" else [])


def test_bench_train_builds_both_paths_models_on_the_commands_host(
        acme: tuple[PluginHost, _Parts], tmp_path: Path) -> None:
    """Our path (the trainer's) and the plain PyTorch loop each build ``acme.parts`` once, each
    on a host that knows ``acme.gpt``, and start from the same weights."""
    host, parts = acme
    out = tmp_path / "train.json"
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "train", "--model", "acme.parts", "--steps", "2", "--warmup", "1", "--batch", "1", "--seq",
              "16", "--device", "cpu", "--baseline", "--baseline-variants", "eager", "--json", str(out)], host=host)
    assert exit_.value.code in (0, None)
    assert len(parts.hosts) == 2 and all("acme.gpt" in h.names("model") for h in parts.hosts)
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2
    assert rows[0]["loss_first"] == pytest.approx(rows[1]["loss_first"], rel=1e-5)
