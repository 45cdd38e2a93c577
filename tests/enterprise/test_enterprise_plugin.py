"""The enterprise edition is an ordinary entry-point plugin that adds hookspecs of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from _hosts import enterprise_host

from deepseek import hookimpl
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost, PluginWarning
from deepseek.plugins.settings import PluginSettings


@pytest.fixture
def host() -> PluginHost:
    return enterprise_host()


def test_enterprise_pins_pro_and_core_exactly() -> None:
    requires = metadata.requires("deepseek-enterprise") or []
    version = metadata.version("deepseek-enterprise")
    assert f"deepseek-pro=={version}" in [r.replace(" ", "") for r in requires]
    assert metadata.version("deepseek-pro") == metadata.version("deepseek-core") == version


def test_enterprise_loads_through_its_entry_point(host: PluginHost) -> None:
    record = host.records["deepseek-enterprise"]
    assert record.status == "ok", record.reason
    assert record.edition == "enterprise (V3)"
    assert record.modules == ["deepseek_enterprise.plugin"]


def test_enterprise_hookspecs_become_registration_kinds(host: PluginHost) -> None:
    kinds = host.registration_hooks()
    assert kinds["deepseek_register_compressors"] == "compressor"
    assert kinds["deepseek_register_tuners"] == "tuner"
    assert host.pm.hook.deepseek_register_compressors.has_spec()


def test_a_third_party_compressor_registers_through_the_enterprise_hook(host: PluginHost) -> None:
    class Prune:
        @hookimpl
        def deepseek_register_compressors(self, register):  # type: ignore[no-untyped-def]
            register("prune.magnitude", "deepseek_enterprise.plugin:deepseek_add_hookspecs",
                     description="magnitude pruning")

    record = host.register_plugin(Prune(), dist="deepseek-prune", version="1.0")
    assert record.status == "ok", record.reason
    assert record.components == {"compressor": ["prune.magnitude"]}
    comp = host.resolve("compressor", "prune.magnitude")
    assert (comp.description, comp.dist, comp.version) == ("magnitude pruning", "deepseek-prune", "1.0")


def test_the_enterprise_hook_needs_enterprise_loaded() -> None:
    class Prune:
        @hookimpl
        def deepseek_register_compressors(self, register):  # type: ignore[no-untyped-def]
            register("prune.magnitude", "m:x")

    without = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro"})))
    with pytest.warns(PluginWarning, match="implements hook 'deepseek_register_compressors'; that hook is specified"):
        record = without.register_plugin(Prune(), dist="deepseek-prune")
    # the reason names the edition that is installed but left out, and both ways out (no lookalike hook)
    assert record.status == "failed" and "specified by deepseek-enterprise 0.1.0, which is installed but disabled" in record.reason
    assert "mark the implementation @hookimpl(optionalhook=True) to load without that edition" in record.reason
    assert "did you mean" not in record.reason


def test_invalid_compressor_registration_names_plugin_and_hook() -> None:
    class Bad:
        @hookimpl
        def deepseek_register_compressors(self, register):  # type: ignore[no-untyped-def]
            register("Bad Name", lambda: None)

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}),
                                     strict=True))
    with pytest.raises(PluginError, match=r"^deepseek-bad 0\.0\.0 \(deepseek-bad:Bad, "
                       r"deepseek_register_compressors\): invalid compressor name 'Bad Name'"):
        host.register_plugin(Bad(), dist="deepseek-bad")
    assert "Bad Name" not in host.names("compressor")


@pytest.mark.parametrize("reserved", ["vision", "audio", "text"])
def test_a_fusion_named_like_a_unimodal_model_is_refused_and_the_plugin_keeps_nothing(reserved: str) -> None:
    """The study's --config and its tables take vision/audio/text as the unimodal models, so a fusion
    method of that name would be hidden there: its registration is refused (as name or alias) by the
    names the enterprise hookspec reserves, naming distribution, plugin and hook, transactionally."""
    from _hosts import registering

    from deepseek_enterprise.fusion import LateFusion

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"})))
    plugin = registering("deepseek_register_fusions", {"acme.mean": LateFusion, reserved: LateFusion})
    with pytest.warns(PluginWarning):
        record = host.register_plugin(plugin, dist="deepseek-acme", version="1.0")
    assert record.status == "failed"
    assert record.reason.startswith(
        f"deepseek-acme 1.0 (deepseek-acme:TestPlugin, deepseek_register_fusions): fusion name {reserved!r} is "
        f"reserved: 'deepseek multimodal study --config {reserved}' and the study's tables name the {reserved}-only "
        "model so; give your fusion another name, such as one starting with your plugin's name"), record.reason
    assert host.names("fusion") == ["concat", "cross_attention", "late"]  # acme.mean registered first: not kept

    class Aliased:
        @hookimpl
        def deepseek_register_fusions(self, register):  # type: ignore[no-untyped-def]
            register("acme.mean", LateFusion, aliases=[reserved])

    with pytest.warns(PluginWarning, match=f"fusion alias {reserved!r} is reserved"):
        assert host.register_plugin(Aliased(), dist="deepseek-acme2").status == "failed"
    assert host.names("fusion") == ["concat", "cross_attention", "late"]
    # the same name under another kind is no one's reserved name
    assert host.register_plugin(registering("deepseek_register_compressors", {reserved: "deepseek_enterprise.compress.prune:PruneFFN"}),
                                dist="deepseek-acme3").status == "ok"


def test_plugins_list_json_shows_all_three_editions() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "deepseek", "plugins", "list", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    records = {r["distribution"]: r for r in json.loads(out)}
    assert {"deepseek-core", "deepseek-pro", "deepseek-enterprise"} <= set(records)
    assert records["deepseek-enterprise"]["status"] == "ok"
    assert records["deepseek-pro"]["components"]["strategy"]


def test_enterprise_dependencies_import() -> None:
    import timm
    import torchaudio

    assert timm.list_models("swin*"), "timm ships Swin architectures"
    assert torchaudio.transforms.MelSpectrogram(sample_rate=16000)


def test_hooks_enterprise_md_is_current() -> None:
    """docs/hooks-enterprise.md is generated from enterprise's hookspecs and lists every one."""
    from deepseek.plugins.docgen import hook_specs, render_edition
    from deepseek_enterprise import hookspecs as enterprise_hookspecs

    page = (Path(__file__).resolve().parents[2] / "docs" / "hooks-enterprise.md").read_text(encoding="utf-8")
    assert page == render_edition(enterprise_hookspecs), (
        "docs/hooks-enterprise.md is stale: run python -m deepseek.plugins.docgen deepseek_enterprise.hookspecs "
        "> docs/hooks-enterprise.md")
    names = [name for name, _ in hook_specs(enterprise_hookspecs)]
    assert names == ["deepseek_register_fusions", "deepseek_register_compressors", "deepseek_register_tuners",
                     "deepseek_register_executors"]
    for name, kind in zip(names, ("fusion", "compressor", "tuner", "executor"), strict=True):
        assert f"| `{name}` | `{kind}` |" in page and f"### `{name}`" in page


def test_a_third_party_fusion_is_checked_when_the_model_is_built(host: PluginHost) -> None:
    """A fusion target that is not a Fusion subclass, or whose Options do not extend
    FusionBaseOptions, is the plugin's bug: one PluginError line naming the fusion and its
    distribution (was a ConfigError, exit 2, as if the config were wrong); a subclass that leaves Options out takes
    the base keys."""
    import dataclasses

    import torch
    from torch import nn

    from deepseek.errors import PluginError
    from deepseek.models.factory import instantiate_model
    from deepseek.plugins.calls import PLUGIN_BUG
    from deepseek_enterprise.fusion import Fusion, LateFusion

    @dataclasses.dataclass(frozen=True)
    class Loose:
        width: int = 3

    class LooseOptions(LateFusion):
        Options = Loose

    class NoOptionsGiven(LateFusion):
        """Late fusion again, with Options left out."""

    assert NoOptionsGiven.Options is Fusion.Options

    class Acme:
        @hookimpl
        def deepseek_register_fusions(self, register):  # type: ignore[no-untyped-def]
            register("acme.identity", nn.Identity, description="not a fusion")
            register("acme.loose", LooseOptions, description="options of its own kind")
            register("acme.plain", NoOptionsGiven, description="late fusion, Options left out")

    assert host.register_plugin(Acme(), dist="acme-fusion", version="1.0").status == "ok"
    cls = host.resolve("model", "multimodal.classifier").load()
    tiny = {"modalities": ["vision", "text"], "vision": {"embed_dim": 16, "depths": [1, 1]},
            "text": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}}
    with pytest.raises(PluginError) as info:
        instantiate_model(cls, {**tiny, "fusion": "acme.identity"}, name="multimodal.classifier", host=host)
    assert str(info.value) == (
        f"model.fusion: {host.resolve('fusion', 'acme.identity').label}: registered as <class 'torch.nn.modules.linear.Identity'>, "
        "not a subclass of deepseek_enterprise.fusion.Fusion; a fusion plugin registers a Fusion subclass "
        f"(docs/multimodal.md section 3); {PLUGIN_BUG}")
    with pytest.raises(PluginError) as info:
        instantiate_model(cls, {**tiny, "fusion": "acme.loose"}, name="multimodal.classifier", host=host)
    assert str(info.value) == (
        f"model.fusion: {host.resolve('fusion', 'acme.loose').label}: declares Options {LooseOptions.Options!r}, which does not "
        "extend deepseek_enterprise.fusion.FusionBaseOptions (a fusion's Options are a dataclass extending it, or "
        f"left out: docs/multimodal.md section 3); {PLUGIN_BUG}")
    model = instantiate_model(cls, {**tiny, "fusion": "acme.plain", "fusion_options": {"d_model": 8}},
                              name="multimodal.classifier", host=host)
    assert model.fusion.options.d_model == 8 and isinstance(model.fusion.heads["text"], torch.nn.Linear)


def test_a_wrong_argument_of_an_enterprise_hook_points_at_its_page() -> None:
    """The refusal of an implementation asking for an argument an enterprise hook does not pass
    names the page that documents that hook, docs/hooks-enterprise.md, not core's docs/hooks.md."""

    class Typo:
        @hookimpl
        def deepseek_register_compressors(self, reg):  # type: ignore[no-untyped-def]
            pass

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-enterprise"})))
    with pytest.warns(UserWarning):
        record = host.register_plugin(Typo(), dist="deepseek-typo", version="0.4")
    assert record.status == "failed"
    assert "deepseek_register_compressors asks for the argument 'reg', which the hook does not pass; its " \
           "arguments are register (docs/hooks-enterprise.md)" in record.reason, record.reason
