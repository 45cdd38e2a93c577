"""A third-party compressor is held to its contract where ``deepseek compress`` meets it: a
registered target that is not a ``Compressor`` subclass, an exception from its ``compress``, or a
``[model]`` table that does not rebuild the model it returned (a config error, or other shapes:
built on the meta device) is one line naming the compressor and its distribution, exit 1, nothing
written; in a ``--max-drop`` search it is that recipe's ``failed`` verdict and the search goes on.
``loads with`` names every plugin distribution whose code the result is made of."""

from __future__ import annotations

import contextlib
import copy
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from _compresshelpers import CONFIG
from _exitstatus import exit_status
from _hosts import enterprise_host, registering
from torch import nn

from deepseek.cli.main import main
from deepseek.errors import PluginError, UsageError
from deepseek.plugins.host import PluginHost
from deepseek_enterprise.compress.compressor import (
    Compressed,
    Compressor,
    StepContext,
    create_compressor,
    loading_needs,
    run_step,
)


class Same(Compressor):
    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        return Compressed(copy.deepcopy(model), config.to_dict()["model"])


class Raises(Compressor):
    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom inside compress")


class UnknownKey(Compressor):
    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        return Compressed(copy.deepcopy(model), {**config.to_dict()["model"], "widths": 3})


class OtherShape(Compressor):
    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        return Compressed(copy.deepcopy(model), {**config.to_dict()["model"], "d_ff": 128})


class BareModule(Compressor):
    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        return copy.deepcopy(model)  # forgot Compressed(...)


class InPlace(Compressor):
    """Prunes the model it was given, then returns a copy: the original the search compares
    against and starts every later recipe from is gone."""

    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(p.abs() > p.abs().mean())
        return Compressed(copy.deepcopy(model), config.to_dict()["model"])


class Swaps(Compressor):
    """Replaces a parameter of the model it was given (no in-place write: a new tensor)."""

    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        model.blocks[0].mlp.fc.weight = nn.Parameter(model.blocks[0].mlp.fc.weight.detach().half().float())
        return Compressed(copy.deepcopy(model), config.to_dict()["model"])


@dataclass(frozen=True)
class LevelOptions:
    level: int  # no default: every option needs one


class NeedsKey(Same):
    Options = LevelOptions


class Nan(Compressor):
    """Returns a model whose weights are NaN: it evaluates to a NaN loss."""

    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]
        broken = copy.deepcopy(model)
        with torch.no_grad():
            for p in broken.parameters():
                p.fill_(float("nan"))
        return Compressed(broken, config.to_dict()["model"])


class NotACompressor:
    Options = Same.Options

    def __init__(self, options, *, host=None):  # type: ignore[no-untyped-def]
        pass


class Gate(nn.Module):
    """A layer of this plugin's own code inside a compressed model."""


COMPRESSORS = {"same": Same, "raises": Raises, "unknownkey": UnknownKey, "othershape": OtherShape,
               "notcomp": NotACompressor, "bare": BareModule, "inplace": InPlace, "swaps": Swaps,
               "needskey": NeedsKey, "nan": Nan}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    acme = registering("deepseek_register_compressors", {f"acme.{kind}": cls for kind, cls in COMPRESSORS.items()})
    return enterprise_host((acme, "acme-compressors"))


@pytest.fixture(scope="module")
def tiny(host: PluginHost):  # noqa: ANN201
    from deepseek.config.load import config_from_dict
    from deepseek.training.build import build_model

    config = config_from_dict(CONFIG, host=host)
    return build_model(config, host=host).eval(), config


HEAD = r"^compressor 'acme\.{}' \(acme-compressors 1\.0, registered by [\w.]+\): "
FIX = r"; nothing was written; a bug in the plugin: Compressed\.model_table must rebuild Compressed\.model exactly"


def test_a_registered_class_that_is_not_a_compressor_names_its_distribution(host: PluginHost) -> None:
    with pytest.raises(PluginError, match=HEAD.format("notcomp") + r"registered as <class .*NotACompressor'>, not a "
                                          r"subclass of deepseek_enterprise\.compress\.compressor\.Compressor; "):
        create_compressor(host, "acme.notcomp", {}, where="--set (acme.notcomp)")


def test_options_without_a_default_name_the_distribution_and_the_page(host: PluginHost) -> None:
    """An Options field without a default was refused as ``compressor 'acme.needskey': ...
    (docs/plugins.md section 10)``: neither the distribution to blame nor the compressor's page."""
    with pytest.raises(PluginError, match=HEAD.format("needskey") + r"its Options LevelOptions field 'level' has no "
                                          r"default; .*\(docs/compress\.md, 'Writing a compressor'\)$"):
        create_compressor(host, "acme.needskey", {"level": 2}, where="--set (acme.needskey)")


@pytest.mark.parametrize(("kind", "words"), [
    ("raises", r"compress raised RuntimeError: boom inside compress; a bug in the plugin"),
    # the fix for what went wrong (it told the author to make model_table rebuild the model)
    ("bare", r"compress returned a GPT, not a Compressed with a torch\.nn\.Module; nothing was written; a bug in "
             r"the plugin: return Compressed\(model, model_table, record\)"),
    ("unknownkey", r"the \[model\] table it returned does not rebuild a model \(model\.widths: unknown key;.*\)" + FIX),
    ("othershape", r"the \[model\] table it returned builds another model than the one it returned "
                   r"\(blocks\.0\.mlp\.fc\.weight is \(64, 32\) in the returned model, \(128, 32\) from the table and "
                   r"\d+ more\)" + FIX),
])
def test_a_broken_step_is_one_line_naming_compressor_and_distribution(host: PluginHost, tiny, kind: str,  # noqa: ANN001
                                                                      words: str) -> None:
    model, config = tiny
    compressor = create_compressor(host, f"acme.{kind}", {}, where="--set")
    with pytest.raises(PluginError, match=HEAD.format(kind) + words) as info:
        run_step(host, compressor, model, config, StepContext())
    assert not isinstance(info.value, UsageError) and "\n" not in str(info.value)


@pytest.mark.parametrize(("kind", "first"), [("inplace", "wte.weight"), ("swaps", "blocks.0.mlp.fc.weight")])
def test_a_step_that_changes_the_model_it_was_given_is_one_line(host: PluginHost, kind: str, first: str) -> None:
    """docs/compress.md says 'do not modify it in place', but nothing checked it: a --max-drop
    search compared every later recipe with, and started it from, the damaged original."""
    from deepseek.config.load import config_from_dict
    from deepseek.training.build import build_model
    from deepseek_enterprise.compress.search import parse_budget, parse_recipe, search

    config = config_from_dict(CONFIG, host=host)
    model = build_model(config, host=host).eval()  # its own: this test's compressors damage it
    compressor = create_compressor(host, f"acme.{kind}", {}, where="--set")
    with pytest.raises(PluginError, match=HEAD.format(kind) + rf"compress changed the model it was given in place "
                                          rf"\({re.escape(first)}( and \d+ more)?\), which the later recipes of a "
                                          r"--max-drop search start from; nothing was written; a bug in the plugin: "
                                          r"work on a copy \(copy\.deepcopy\(model\)\)"):
        run_step(host, compressor, model, config, StepContext())
    fresh = build_model(config, host=host).eval()
    best, tried = search(host, parse_budget("1%"), [parse_recipe(f"acme.{kind}"), parse_recipe("acme.same")], fresh,
                         config, [], {"val_loss": 2.0, "weights_bytes": 10}, lambda m, c: {"val_loss": 2.0, "weights_bytes": 10})
    assert re.match("failed: " + HEAD.format(kind)[1:] + "compress changed", tried[0].verdict), tried[0].verdict
    assert best is tried[1]


def test_a_working_step_gives_its_result_and_config(host: PluginHost, tiny) -> None:  # noqa: ANN001
    model, config = tiny
    result, new_config = run_step(host, create_compressor(host, "acme.same", {}, where="--set"), model, config,
                                  StepContext())
    assert new_config.model.name == "tiny" and result.model is not model


def test_a_search_reports_a_broken_recipe_as_failed_and_goes_on(host: PluginHost, tiny) -> None:  # noqa: ANN001
    from deepseek_enterprise.compress.search import parse_budget, parse_recipe, search

    model, config = tiny
    recipes = [parse_recipe("acme.raises"), parse_recipe("acme.othershape"), parse_recipe("acme.same")]
    best, tried = search(host, parse_budget("1%"), recipes, model, config, [], {"val_loss": 2.0, "weights_bytes": 10},
                         lambda m, c: {"val_loss": 2.0, "weights_bytes": 10})
    assert tried[0].verdict.startswith(f"failed: {host.resolve('compressor', 'acme.raises').label}: compress raised "
                                       "RuntimeError: boom inside compress")
    assert tried[1].verdict.startswith(f"failed: {host.resolve('compressor', 'acme.othershape').label}: the [model] "
                                       "table")
    assert best is tried[2] and tried[2].verdict == "kept: the smallest within budget"
    assert tried[0].row()["verdict"] == tried[0].verdict and tried[0].figures == {}


def test_a_recipe_steps_refusal_names_no_option_the_command_was_not_given(host: PluginHost, tiny) -> None:  # noqa: ANN001
    """A step of a --max-drop search (a --recipe or a built-in recipe) that does not apply said
    "--method prune.mlp: ...; use --method prune.ffn", naming an option the search was not given."""
    from deepseek_enterprise.compress.search import parse_budget, parse_recipe, search

    model, config = tiny
    recipes = [parse_recipe("prune.mlp ratio=0.5")]
    _, tried = search(host, parse_budget("1%"), recipes, model, config, [], {"val_loss": 2.0, "weights_bytes": 10},
                      lambda m, c: {"val_loss": 2.0, "weights_bytes": 10})
    assert tried[0].verdict == ("not applicable: prune.mlp: a GPT's MLP channels are pruned by prune.ffn; use "
                                "prune.ffn")


def test_loads_with_names_the_plugin_whose_code_the_model_is_made_of(host: PluginHost) -> None:
    """A fusion method or encoder of a plugin inside a core or enterprise model: its distribution
    is needed to rebuild the model, as the model's own is."""
    made_of = nn.Sequential(nn.Linear(2, 2), Gate())
    assert loading_needs(host, Compressed(made_of, {"name": "tiny"})) == "deepseek-core + acme-compressors"
    assert loading_needs(host, Compressed(made_of, {"name": "multimodal.classifier"})) == (
        "deepseek-core + deepseek-enterprise + acme-compressors")
    assert loading_needs(host, Compressed(nn.Sequential(nn.Linear(2, 2)), {"name": "tiny"})) == "deepseek-core"


def _cli(host: PluginHost, cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(list(args), host=host)
        except SystemExit as exc:
            code = exit_status(exc.code, err)
    return code, err.getvalue().strip()


def test_set_without_a_value_names_set_and_the_form(host: PluginHost, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = _cli(host, tmp_path, monkeypatch, "compress", "--checkpoint", "run", "--method", "acme.same",
                     "--set", "sparsity", "--out", "out")
    assert code == 2 and err == ("error: --set 'sparsity': expected KEY=VALUE, an option of compressor acme.same, "
                                 "e.g. --set sparsity=0.5 (docs/compress.md)")


def test_the_command_refuses_a_broken_table_and_writes_nothing(host: PluginHost, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tomli_w

    (tmp_path / "c.toml").write_text(tomli_w.dumps(CONFIG))
    code, err = _cli(host, tmp_path, monkeypatch, "train", "c.toml", "--run-dir", "run", "--quiet", "--max-steps", "2")
    assert code == 0, err
    torch.manual_seed(0)
    code, err = _cli(host, tmp_path, monkeypatch, "compress", "--checkpoint", "run", "--method", "acme.othershape",
                     "--out", "out", "--latency-runs", "0", "--device", "cpu", "--calibration-batches", "0")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {host.resolve('compressor', 'acme.othershape').label}: the [model] table it "
                          "returned builds another model"), err
    assert not (tmp_path / "out").exists()


def test_the_command_refuses_a_model_that_evaluates_to_nan_and_writes_nothing(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--method wrote a compressor's NaN model and exited 0 (val_loss nan in its table)."""
    import tomli_w

    (tmp_path / "c.toml").write_text(tomli_w.dumps(CONFIG))
    code, err = _cli(host, tmp_path, monkeypatch, "train", "c.toml", "--run-dir", "run", "--quiet", "--max-steps", "2")
    assert code == 0, err
    code, err = _cli(host, tmp_path, monkeypatch, "compress", "--checkpoint", "run", "--method", "acme.nan",
                     "--out", "out", "--latency-runs", "0", "--device", "cpu", "--calibration-batches", "0")
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {host.resolve('compressor', 'acme.nan').label}: the model it returned evaluates "
                          "to non-finite values {'val_loss': nan}, where the original's are finite; nothing was "
                          "written"), err
    assert not (tmp_path / "out").exists()  # not even the empty folder made for it
    # a search whose only recipe ran to a NaN loss said "no recipe could run on this model"
    code, err = _cli(host, tmp_path, monkeypatch, "compress", "--checkpoint", "run", "--max-drop", "1%",
                     "--recipe", "acme.nan", "--out", "out", "--latency-runs", "0", "--device", "cpu",
                     "--calibration-batches", "0")
    assert code == 2, err
    assert err.splitlines()[-1] == (
        "error: --max-drop 1%: no recipe stays within it: the only recipe that ran, acme.nan, evaluates to "
        "val_loss = nan, not a finite number; nothing was written (try other recipes or step options with --recipe, "
        "docs/compress.md; a compressor whose model evaluates to NaN is a bug to report to its authors)"), err
    assert not (tmp_path / "out").exists()


def test_a_model_holding_an_inference_tensor_compresses(host: PluginHost) -> None:
    """The in-place check reads version counters, which tensors made under torch.inference_mode
    lack (reading one raises RuntimeError): such a tensor is checked by identity and shape."""
    from deepseek.config.load import config_from_dict
    from deepseek.training.build import build_model

    config = config_from_dict(CONFIG, host=host)
    model = build_model(config, host=host).eval()
    with torch.inference_mode():
        model.register_buffer("table", torch.zeros(3), persistent=True)
    compressor = create_compressor(host, "acme.same", {}, where="--set")
    with pytest.raises(PluginError, match=r"the \[model\] table it returned builds another model"):  # 'table' is extra
        run_step(host, compressor, model, config, StepContext())


def test_a_search_rejects_a_recipe_that_evaluates_to_nan(host: PluginHost, tiny) -> None:  # noqa: ANN001
    """A NaN drop compared False with the budget, so a recipe whose model evaluates to a NaN loss
    was "kept: the smallest within budget" and written."""
    from deepseek_enterprise.compress.search import parse_budget, parse_recipe, search

    def measure(m, c):  # type: ignore[no-untyped-def]  # the loss a NaN weight gives
        return {"val_loss": float("nan") if any(p.isnan().any() for p in m.parameters()) else 2.0, "weights_bytes": 10}

    model, config = tiny
    recipes = [parse_recipe("acme.nan"), parse_recipe("acme.same")]
    best, tried = search(host, parse_budget("1%"), recipes, model, config, [], {"val_loss": 2.0, "weights_bytes": 10},
                         measure)
    assert tried[0].verdict == "rejected: it evaluates to val_loss = nan, not a finite number"
    assert best is tried[1] and tried[1].verdict == "kept: the smallest within budget"
    best, tried = search(host, parse_budget("1%"), recipes[:1], model, config, [],
                         {"val_loss": 2.0, "weights_bytes": 10}, measure)
    assert best is None
