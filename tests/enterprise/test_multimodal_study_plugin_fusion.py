"""``deepseek multimodal study --config NAME``: the study's fused models are the registered fusion
methods (the registry is the one list of them), so a plugin's fusion method is one of the study's
models as the built-in ones are: trained with the recipe's ``[model]`` keys (not the built-ins'
``fusion_options`` ``joint``/``late_residual``), tested, tabled, and read back by ``multimodal
table``; a name that is neither a modality nor a registered fusion method is one line with a
did-you-mean over the registered ones, before anything is written."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from _hosts import enterprise_host, registering
from _inprocess import deepseek_here

from deepseek.plugins.host import PluginHost
from deepseek_enterprise.fusion import ConcatFusion, Fusion, FusionBaseOptions, FusionOutput
from deepseek_enterprise.study_report import millions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclasses.dataclass(frozen=True)
class GatedOptions(FusionBaseOptions):
    init: float = 0.0
    """Starting value of every modality's gate logit."""


class Gated(Fusion):
    """A per-modality learned sigmoid gate over the present modalities' own logits."""

    Options = GatedOptions

    def __init__(self, options, *, dims, num_classes):  # type: ignore[no-untyped-def]
        super().__init__(options, dims=dims, num_classes=num_classes)
        self.gate = torch.nn.Parameter(torch.full((len(dims),), float(options.init)))

    def forward(self, features, present):  # type: ignore[no-untyped-def]
        pooled = self.pool(features)
        logits = self.classify(pooled)
        weights = {m: torch.sigmoid(self.gate[i]) * present[m].float().unsqueeze(-1) for i, m in enumerate(logits)}
        fused = sum(weights[m] * logits[m] for m in logits) / sum(weights.values()).clamp_min(1e-6)
        return FusionOutput(fused, logits, pooled)


BASE = """\
[model]
fusion = "acme.gated"
[model.vision]
img_size = 8
patch_size = 4
window_size = 2
embed_dim = 8
depths = [1]
num_heads = [1]
[model.audio]
input = "features"
d_model = 16
n_layers = 1
[model.text]
d_model = 16
n_heads = 2
n_layers = 1
max_seq_len = 32
[model.fusion_options]
d_model = 16
init = 1.5
"""
STUDY = ("multimodal", "study", "--task", "redundant", "--seed", "0", "--steps", "1", "--batch", "16",
         "--eval-size", "16", "--device", "cpu", "--out", "st")


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return enterprise_host((registering("deepseek_register_fusions", {"acme.gated": Gated}), "acme-fusion"))


def test_a_registered_fusion_method_is_one_of_the_study_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               host: PluginHost) -> None:
    (tmp_path / "base.toml").write_text(BASE)  # tiny encoders; the plugin's own keys
    code, err, stdout = deepseek_here(monkeypatch, tmp_path, *STUDY, "base.toml", "--config", "acme.gated", host=host)
    assert code == 0, err[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "st" / "results.jsonl").read_text().splitlines()]
    assert [(r["config"], r["recipe"], r["steps"]) for r in rows] == [("acme.gated", "joint", 1)]
    assert set(rows[0]["missing"]) == {"vision", "audio", "text"}
    model = tomllib.loads((tmp_path / "st" / "runs" / "redundant-acme.gated-s0" / "config.toml").read_text())["model"]
    assert (model["fusion"], model["modalities"]) == ("acme.gated", ["vision", "audio", "text"])
    # the joint recipe's [model] keys; its fusion_options (joint) are concat's and cross_attention's
    assert (model["aux_loss_weight"], model["modality_dropout"]) == (0.5, 0.2)
    assert model["fusion_options"] == {"d_model": 16, "init": 1.5}  # the file's, for its fusion method's runs
    params = rows[0]["parameters"]
    assert f"| acme.gated | {millions(params)} | {100 * rows[0]['test']['test_accuracy']:.1f}" in stdout
    # timed at batch 1 as every fused model the study trains is (not cross_attention alone)
    lat = rows[0]["latency"]
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] and (lat["parameters"], lat["device"]) == (params, "cpu")
    assert (f"acme.gated, batch 1 on cpu (1 run, {millions(params)} parameters): p50 {lat['p50_ms']:.2f} ms, "
            f"p90 {lat['p90_ms']:.2f} ms") in stdout
    # the table reads the plugin's rows back (no host needed: a fusion method's name, checked by shape)
    assert deepseek_here(monkeypatch, tmp_path, "multimodal", "table", "st/results.jsonl") == (0, "", stdout)


@pytest.mark.parametrize(("name", "hint"), [("acme.gatd", " (did you mean 'acme.gated'?)"),
                                            ("visoin", " (did you mean 'vision'?)"), ("nope", "")])
def test_an_unknown_model_names_the_registered_fusion_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              host: PluginHost, name: str, hint: str) -> None:
    out = deepseek_here(monkeypatch, tmp_path, *STUDY, "--config", "vision", "--config", name, host=host)
    assert out == (2, f"error: --config: {name!r} is not a model of the study{hint}; give vision, audio, text "
                      "(unimodal) or a registered fusion method: acme.gated, concat, cross_attention, late "
                      "(see 'deepseek plugins list')", "")
    assert not (tmp_path / "st").exists()


def test_table_refuses_a_config_that_is_no_fusion_method_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read back from disk, a row's model is a study model or a fusion method's name (which the
    table needs no plugin for); anything else is refused as before."""
    (tmp_path / "bad.jsonl").write_text('{"task": "redundant", "config": "Acme Gated", "seed": 0, '
                                        '"test": {"test_accuracy": 0.5}}\n')
    out = deepseek_here(monkeypatch, tmp_path, "multimodal", "table", "bad.jsonl")
    assert out == (2, "error: bad.jsonl:1: config 'Acme Gated' is not one of vision, audio, text, late, concat, "
                      "cross_attention or a fusion method's name (lower case letters, digits, '.', '_' and '-'); "
                      "pass results.jsonl files of 'study'", "")


@dataclasses.dataclass(frozen=True)
class MixedOptions(GatedOptions):
    joint: float = 0.0
    """Its own key of the name of the built-in fused head's ``joint``: a weight, not that head."""
    late_residual: bool = False
    """Its own switch, of the name of the built-in head's ``late_residual``."""


class Mixed(Gated):
    Options = MixedOptions


def test_a_plugin_methods_own_keys_named_like_the_recipes_reach_its_runs() -> None:
    """The recipes' fusion_options (joint, late_residual) are the built-in fused head's keys
    (HeadOptions): the study sets them in those methods' runs, where the file's values are not
    used. A plugin method whose Options declare keys of those names as their own gets the file's
    values in its runs, judged and built with them, and the study does not call them its own."""
    from deepseek.config.load import config_from_dict
    from deepseek.training.build import build_model
    from deepseek_enterprise.study_base import judged, over_base, unused_keys
    from deepseek_enterprise.study_recipes import study_config

    host = enterprise_host((registering("deepseek_register_fusions", {"acme.mixed": Mixed}), "acme-mixed"))
    base = tomllib.loads(BASE)
    base["model"] = {**base["model"], "fusion": "acme.mixed",
                     "fusion_options": {"d_model": 16, "joint": 0.25, "late_residual": True}}
    run = over_base(study_config("redundant", "acme.mixed", 0, 1, batch=16, lr=1e-3, device="cpu", runs_dir="r"),
                    base, host)
    assert run["model"]["fusion_options"] == {"d_model": 16, "joint": 0.25, "late_residual": True}
    assert judged(base, {}, {}, host)["model"]["fusion_options"] == {"d_model": 16, "joint": 0.25,
                                                                      "late_residual": True}
    assert unused_keys(base, host) == ["model.fusion"]
    built = build_model(config_from_dict(run, host=host), host=host, create_on=torch.device("meta"))
    assert (built.fusion.options.joint, built.fusion.options.late_residual) == (0.25, True)
    # the built-in head's keys in a file for concat: the study's recipe sets them, the file's are not used
    base["model"] = {**base["model"], "fusion": "concat", "fusion_options": {"d_model": 16, "joint": False}}
    run = over_base(study_config("redundant", "concat", 0, 1, batch=16, lr=1e-3, device="cpu", runs_dir="r"),
                    base, host)
    assert run["model"]["fusion_options"] == {"d_model": 16, "joint": True}
    assert judged(base, {}, {}, host)["model"]["fusion_options"] == {"d_model": 16}
    assert unused_keys(base, host) == ["model.fusion", "model.fusion_options.joint"]


class WideConcat(ConcatFusion):
    """A plugin's concat of its own: the built-in fused head's Options, so the recipes' keys."""


def test_a_plugin_method_on_the_fused_head_gets_the_recipes_fusion_options() -> None:
    """Which methods the recipes give fusion_options is said by the method's Options (HeadOptions),
    on the study's host, as for which file values the study replaces: a plugin's method built on
    the fused head trains with the recipe's joint head; one with Options of its own does not."""
    from deepseek_enterprise.study_base import study_fusion_keys
    from deepseek_enterprise.study_recipes import recipe_keys, study_config

    host = enterprise_host((registering("deepseek_register_fusions", {"acme.wide": WideConcat, "acme.mixed": Mixed}),
                            "acme-wide"))
    keys = recipe_keys("acme.wide", "stacked-residual", "redundant", {}, host)
    assert keys["fusion_options"] == {"joint": True, "late_residual": True}
    assert study_fusion_keys("acme.wide", host) == ("joint", "late_residual")
    run = study_config("redundant", "acme.wide", 0, 1, batch=16, lr=1e-3, device="cpu", runs_dir="r", host=host)
    assert run["model"]["fusion_options"] == {"joint": True}
    assert "fusion_options" not in recipe_keys("acme.mixed", "joint", "redundant", host=host)
    assert "fusion_options" not in recipe_keys("late", "joint", "redundant", host=host)
    assert recipe_keys("concat", "joint", "redundant", host=host)["fusion_options"] == {"joint": True}


def test_latency_lines_count_runs_in_words() -> None:
    """One line per model and device, the medians over its timed runs; one seed's model was
    '(1 runs, ...)'."""
    from deepseek_enterprise.study_report import latency_lines

    def row(config: str, p50: float, device: str = "cpu") -> dict[str, object]:
        return {"config": config, "recipe": "joint", "latency": {"device": device, "p50_ms": p50, "p90_ms": 2 * p50,
                                                               "parameters": 350_000}}

    lines = latency_lines([row("concat", 1.0), row("concat", 3.0), row("acme.gated", 2.0), {"config": "vision"}])
    assert [line for line in lines if line] == [
        "concat, batch 1 on cpu (2 runs, 0.35 M parameters): p50 2.00 ms, p90 4.00 ms",
        "acme.gated, batch 1 on cpu (1 run, 0.35 M parameters): p50 2.00 ms, p90 4.00 ms"]
