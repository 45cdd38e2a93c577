"""A third-party model and dataset that are not a GPT (``tests/toyplugin``: a classifier over a
dict batch, Gaussian blobs), registered through entry points with ``deepseek_register_models``
and ``deepseek_register_datasets``, train through core's trainer with no special case: options
validated per component, model metrics logged, checkpoint, bit-exact resume, ``deepseek eval``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from plugin_testing import base_env, host_for

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

TOY = Path(__file__).resolve().parents[2] / "toyplugin"
DIST = "deepseek-toyclf"


def toy_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": {"name": "toyclf.mlp", "hidden": 32, "dropout": 0.1},
        "data": {"name": "toyclf.blobs", "batch_size": 16, "eval_batches": 2},
        "train": {"max_steps": 6, "decay_steps": 6, "warmup_steps": 1, "eval_interval": 3, "lr": 1e-2, "min_lr": 1e-3},
        "precision": {"dtype": "fp32"},
        "strategy": {"name": "single", "device": "cpu"},
        "checkpoint": {"interval": 3, "keep_last": 3},
        "logging": {"runs_dir": str(tmp_path / "runs"), "progress": False},
    }
    for name, table in sections.items():
        data[name] = {**data.get(name, {}), **table}
    return data


def register_one(host: Any, kind: str, name: str, cls: Any, *, dist: str, description: str) -> None:
    """Register one model or dataset class under ``name`` as a plugin of distribution ``dist``,
    through the same hooks an installed plugin implements."""
    from deepseek import hookimpl

    class Plugin:
        @hookimpl
        def deepseek_register_models(self, register):
            if kind == "model":
                register(name, cls, description=description)

        @hookimpl
        def deepseek_register_datasets(self, register):
            if kind == "dataset":
                register(name, cls, description=description)

    host.register_plugin(Plugin(), dist=dist)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(TOY))
    host = host_for(DIST)
    assert host.records[DIST].status == "ok", host.records[DIST].reason
    yield host
    for name in [m for m in sys.modules if m.startswith("deepseek_toyclf")]:
        del sys.modules[name]


def test_registered_with_their_options(host: Any) -> None:
    assert host.resolve("model", "toyclf.mlp").dist == DIST
    assert host.resolve("dataset", "toyclf.blobs").dist == DIST
    config = config_from_dict({"model": {"name": "toyclf.mlp", "hidden": 8},
                               "data": {"name": "toyclf.blobs", "noise": 0.5}}, host=host)
    assert (config.model.options.hidden, config.model.options.depth) == (8, 2)
    assert config.data.options.noise == 0.5 and config.data.batch_size == 16
    with pytest.raises(ConfigError, match=r"^model\.hiden: unknown key \(did you mean 'hidden'\?\)"):
        config_from_dict({"model": {"name": "toyclf.mlp", "hiden": 8}}, host=host)
    with pytest.raises(ConfigError, match=r"^data\.noise: expected a number, got 'loud'"):
        config_from_dict({"data": {"name": "toyclf.blobs", "noise": "loud"}}, host=host)


def test_trains_logs_its_metrics_and_resumes_bit_exactly(host: Any, tmp_path: Path) -> None:
    full = Trainer(config_from_dict(toy_config(tmp_path), host=host), run_dir=tmp_path / "full", host=host).fit()
    assert full.losses[-1] < full.losses[0]
    records = read_metrics(full.run_dir / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["samples_per_s"] > 0 for r in steps)
    assert not any("tokens_per_s" in r for r in steps)  # blobs have no tokens
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 3, 6] and all("val_accuracy" in r for r in evals)
    assert full.val_metrics["val_accuracy"] > evals[0]["val_accuracy"]
    assert (full.run_dir / "loss.png").stat().st_size > 0

    part = Trainer(config_from_dict(toy_config(tmp_path, train={"max_steps": 3}), host=host),
                   run_dir=tmp_path / "part", host=host).fit()
    resumed = Trainer(config_from_dict(toy_config(tmp_path), host=host), resume=part.checkpoint, host=host).fit()
    assert resumed.losses == full.losses[3:]  # dropout on: the RNG state came back too
    assert resumed.val_metrics == full.val_metrics


def test_capability_asked_for_and_missing_is_refused_before_anything_is_written(host: Any, tmp_path: Path) -> None:
    ok = config_from_dict(toy_config(tmp_path, train={"activation_checkpointing": True, "max_steps": 1}), host=host)
    Trainer(ok, run_dir=tmp_path / "ac", host=host).fit()  # the model offers it
    config = config_from_dict(toy_config(tmp_path, precision={"fp32_residual": False}), host=host)
    with pytest.raises(ConfigError, match=r"^precision\.fp32_residual = false needs a configurable residual dtype "
                       r"\(set_fp32_residual\), which model 'toyclf\.mlp' \(BlobClassifier\) does not offer"):
        Trainer(config, run_dir=tmp_path / "refused", host=host).fit()
    assert not (tmp_path / "refused").exists()


def test_eval_and_checkpoint_with_core_only_cli(host: Any, tmp_path: Path) -> None:
    result = Trainer(config_from_dict(toy_config(tmp_path), host=host), run_dir=tmp_path / "run", host=host).fit()
    assert result.generates is False  # no capability 'generation': no `try: deepseek generate` line
    env = base_env(PYTHONPATH=str(TOY))
    out = subprocess.run([sys.executable, "-m", "deepseek", "eval", "--checkpoint", str(result.run_dir), "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)
    assert values["step"] == 6
    assert values["val_loss"] == pytest.approx(result.val_metrics["val_loss"], rel=1e-6)
    assert values["val_accuracy"] == pytest.approx(result.val_metrics["val_accuracy"], rel=1e-6)
    gen = subprocess.run([sys.executable, "-m", "deepseek", "generate", "--checkpoint", str(result.run_dir)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert gen.returncode == 2 and gen.stderr.count("\n") == 1
    assert "the model (BlobClassifier) does not generate text (capability 'generation'); give the model's class" in gen.stderr
    assert "deepseek.models.decoding.generate_cached" in gen.stderr
    assert sorted(p.name for p in (result.run_dir / "checkpoints" / "step-6").iterdir()) == [
        "commit.json", "model.safetensors", "optimizer.safetensors", "rng-0.safetensors", "trainer.json"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda b: [b["features"]], r"a batch must be a non-empty mapping of names to tensors, got list"),
    (lambda b: {"features": b["features"], "label": b["label"][:3]}, r"the same number of them; got first dimensions \[3, 16\]"),
    (lambda b: {k: v[:8] for k, v in b.items()}, r"gave a training batch of step 1 of 8 rows, but data\.batch_size is 16"),
    # a dataset that raises: one line naming it and its distribution (was "internal error: KeyError: ...")
    (lambda b: b["no such key"], r"^dataset 'broken\.blobs' \(deepseek-broken .*\): __next__ raised KeyError: "
                                 r"'no such key'; a bug in the plugin"),
])
def test_a_dataset_yielding_bad_batches_is_named(host: Any, tmp_path: Path, make: Any, message: str) -> None:
    from deepseek_toyclf.data import Blobs


    class Broken(Blobs):
        def __next__(self) -> Any:
            return make(super().__next__())

    register_one(host, "dataset", "broken.blobs", Broken, dist="deepseek-broken", description="blobs gone wrong")
    config = config_from_dict(toy_config(tmp_path, data={"name": "broken.blobs"}), host=host)
    with pytest.raises(Exception, match=message) as info:
        Trainer(config, run_dir=tmp_path / "run", host=host).fit()
    assert "\n" not in str(info.value) and "dataset 'broken.blobs'" in str(info.value)


def test_the_values_its_runs_report_are_known_before_a_run(host: Any) -> None:
    """The toy model declares its metric (``metric_names``), so what a run of it reports is known
    from the config alone (what ``deepseek tune --objective`` checks), and the dataset declares its
    class count (``model_num_classes``)."""
    from deepseek.training.run_values import config_values

    config = config_from_dict({"model": {"name": "toyclf.mlp"}, "data": {"name": "toyclf.blobs", "classes": 3}},
                              host=host)
    values = config_values(config, host)
    assert values.complete and values.evaluation == ("val_loss", "val_accuracy")
    assert "tokens_per_s" not in values.training and "accuracy" in values.training
    assert host.resolve("dataset", "toyclf.blobs").load().model_num_classes(config.data.options) == 3


def _broken_model(where: str) -> Any:
    from deepseek_toyclf.model import BlobClassifier

    class Broken(BlobClassifier):
        def __init__(self, options: Any) -> None:
            super().__init__(options)
            if where == "__init__":
                raise ValueError("cannot build")

        def forward(self, features: Any, label: Any) -> Any:
            if where == "forward" or (where == "eval" and not self.training):
                return {"loss": features[:, :3] @ features[:, :5].T}  # a shape bug: (n, 3) @ (5, n)
            return super().forward(features, label)

    return Broken


@pytest.mark.parametrize(("where", "call"), [("__init__", "__init__"), ("forward", "forward"),
                                             ("eval", "forward")])
def test_a_model_raising_in_its_own_code_is_named(host: Any, tmp_path: Path, where: str, call: str) -> None:
    """What a plugin model's __init__ or forward raises comes out as one line naming it and its
    distribution (was "internal error: RuntimeError: ...")."""
    from deepseek.errors import PluginError

    register_one(host, "model", "broken.mlp", _broken_model(where), dist="deepseek-broken", description="an MLP gone wrong")
    config = config_from_dict(toy_config(tmp_path, model={"name": "broken.mlp", "dropout": 0.0}), host=host)
    with pytest.raises(PluginError) as info:
        Trainer(config, run_dir=tmp_path / "run", host=host).fit()
    message = str(info.value)
    assert re.match(rf"model 'broken\.mlp' \(deepseek-broken 0\.0\.0, registered by [\w.]+\): {call} raised ", message), message
    assert "a bug in the plugin" in message and "\n" not in message
    assert ("ValueError: cannot build" if where == "__init__" else "RuntimeError: mat1 and mat2") in message


def test_a_dataset_raising_in_its_init_is_named(host: Any, tmp_path: Path) -> None:
    from deepseek_toyclf.data import Blobs

    from deepseek.errors import PluginError

    class Broken(Blobs):
        def __init__(self, options: Any, *, batch_size: int, seed: int) -> None:
            raise OSError("no such device")

    register_one(host, "dataset", "broken.blobs", Broken, dist="deepseek-broken", description="blobs gone wrong")
    config = config_from_dict(toy_config(tmp_path, data={"name": "broken.blobs"}), host=host)
    with pytest.raises(PluginError, match=r"^dataset 'broken\.blobs' \(deepseek-broken .*\): __init__ raised "
                                          r"OSError: no such device; a bug in the plugin"):
        Trainer(config, run_dir=tmp_path / "run", host=host).fit()


def test_deepseek_eval_names_a_model_raising_in_its_forward(host: Any, tmp_path: Path) -> None:
    """``deepseek eval`` and ``deepseek.evaluate`` evaluate through ``evaluate_validation``."""
    from deepseek.errors import PluginError
    from deepseek.training.inference import evaluate_validation

    register_one(host, "model", "broken.mlp", _broken_model("eval"), dist="deepseek-broken", description="an MLP gone wrong")
    config = config_from_dict(toy_config(tmp_path, model={"name": "broken.mlp", "dropout": 0.0}), host=host)
    model = _broken_model("eval")(config.model.options).eval()
    with pytest.raises(PluginError, match=r"^model 'broken\.mlp' \(deepseek-broken 0\.0\.0, registered by [\w.]+\): forward raised "
                                          r"RuntimeError: mat1 and mat2"):
        evaluate_validation(model, config, host=host)


def test_deepseek_eval_blames_the_model_a_strategy_placed_not_the_module_it_returned(host: Any, tmp_path: Path) -> None:
    """Under ``eval --strategy NAME`` the module called may be the strategy's own code around the
    model (``pipeline``'s ``PipelinedModel``, pro's): a bug there is not the model's. The
    evaluation blames by the model as built (the placer's settings, ``inference_settings``), not
    by the package of the module it calls (was: "model 'toyclf.mlp' (...): forward raised
    RuntimeError: the strategy's own bug; a bug in the plugin")."""
    from deepseek.models.protocol import TrainableModel
    from deepseek.training.inference import evaluate_validation, inference_settings
    from deepseek.training.mixed_precision import Precision
    from deepseek.training.single import SingleDeviceStrategy

    class Served(TrainableModel):  # a strategy's module around the model: this module's code, not the plugin's
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **batch: Any) -> Any:
            raise RuntimeError("the strategy's own bug")

    config = config_from_dict(toy_config(tmp_path, model={"dropout": 0.0}), host=host)
    model = host.resolve("model", "toyclf.mlp").load()(config.model.options)  # the plugin's, deepseek_toyclf's code
    placer = SingleDeviceStrategy({"device": "cpu"}, precision=Precision("fp32"))
    served = Served(placer.place_for_inference(model, inference_settings(model, config, host)))
    with pytest.raises(RuntimeError, match=r"^the strategy's own bug$"):
        evaluate_validation(served, config, host=host, placer=placer)


def test_resume_with_data_needing_a_larger_model_names_the_checkpoint(host: Any, tmp_path: Path) -> None:
    """The run's config.toml holds the num_classes the framework filled in from the data; with
    data needing more, the hint "remove model.num_classes" was wrong there (a resumed model keeps
    its size)."""
    import dataclasses

    from deepseek_toyclf.model import BlobClassifier, MLPOptions

    from deepseek.cli.train_cmd import build_train_config
    from deepseek.config.data_sizes import DataSizeError

    @dataclasses.dataclass(frozen=True)
    class SizedOptions(MLPOptions):
        num_classes: int = 4

    class Sized(BlobClassifier):  # follows the data's classes (Dataset.model_num_classes)
        Options = SizedOptions

        def __init__(self, options: SizedOptions) -> None:
            super().__init__(dataclasses.replace(options, classes=options.num_classes))

    register_one(host, "model", "sized.mlp", Sized, dist="deepseek-sized", description="an MLP as wide as the data's classes")
    config = config_from_dict(toy_config(tmp_path, model={"name": "sized.mlp"}, train={"max_steps": 3}), host=host)
    assert config.model.options.num_classes == 4  # filled in from data.classes
    run = Trainer(config, run_dir=tmp_path / "run", host=host).fit().run_dir
    with pytest.raises(ConfigError) as info:
        build_train_config(None, ("data.classes=6",), resume=str(run), max_steps=6, host=host)
    assert str(info.value).startswith(
        f"--resume {run}/checkpoints/step-3: the checkpoint's model has model.num_classes = 4, smaller than the 6 "
        "classes of dataset 'toyclf.blobs' (its labels) with this command's data settings; a resumed run keeps its "
        "model"), info.value
    with pytest.raises(DataSizeError, match="remove model.num_classes to follow the data"):  # given here: as usual
        build_train_config(None, ("model.num_classes=2",), resume=str(run), max_steps=6, host=host)


def test_a_dataset_position_that_is_not_json_is_named_before_training(host: Any, tmp_path: Path) -> None:
    """A tensor in state_dict() trained every step, then failed writing the first checkpoint as an
    internal error, leaving an empty checkpoints/ folder."""
    import torch
    from deepseek_toyclf.data import Blobs

    from deepseek.errors import PluginError

    class TensorState(Blobs):
        def state_dict(self) -> dict:
            return {**super().state_dict(), "index": torch.tensor(self.index)}

    register_one(host, "dataset", "broken.blobs", TensorState, dist="deepseek-broken", description="blobs with a tensor position")
    config = config_from_dict(toy_config(tmp_path, data={"name": "broken.blobs"}), host=host)
    with pytest.raises(PluginError, match=r"^dataset 'broken\.blobs' \(deepseek-broken .*\): state_dict\(\) returned "
                                          r"a value that is not JSON-ready \(Object of type Tensor is not JSON "
                                          r"serializable\); return numbers"):
        Trainer(config, run_dir=tmp_path / "run", host=host).fit()
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists() or "loss" not in (tmp_path / "run" / "metrics.jsonl").read_text()


@pytest.mark.parametrize(("returns", "message"), [
    (lambda val: None, r"validation_batches\(2\) returned NoneType None; return a list of at most 2 global batches"),
    (lambda val: {"features": 1}, r"validation_batches\(2\) returned dict \{'features': 1\}; return a list"),
    (lambda val: val * 3, r"validation_batches\(2\) returned more than 2 batches; return at most limit"),
])
def test_validation_batches_that_are_no_list_of_batches_are_named(
        host: Any, tmp_path: Path, returns: Any, message: str) -> None:
    """``None`` was 'internal error: TypeError: object of type 'NoneType' has no len()'; more than
    ``limit`` batches were all evaluated, every evaluation."""
    from deepseek_toyclf.data import Blobs

    from deepseek.errors import PluginError

    class Odd(Blobs):
        def validation_batches(self, limit: int) -> Any:
            return returns(super().validation_batches(limit))

    register_one(host, "dataset", "broken.blobs", Odd, dist="deepseek-broken", description="odd validation batches")
    config = config_from_dict(toy_config(tmp_path, data={"name": "broken.blobs"}), host=host)
    with pytest.raises(PluginError, match=r"^dataset 'broken\.blobs' \(deepseek-broken .*\): " + message):
        Trainer(config, run_dir=tmp_path / "run", host=host).fit()
    assert not (tmp_path / "run").exists()


def test_validation_batches_from_a_generator_evaluate_as_a_list_does(host: Any, tmp_path: Path) -> None:
    """A generator of batches (what the docs' 'at most limit batches' allows) was 'internal error:
    TypeError: object of type 'generator' has no len()'."""
    from deepseek_toyclf.data import Blobs

    class Yields(Blobs):
        def validation_batches(self, limit: int) -> Any:
            yield from super().validation_batches(limit)

    register_one(host, "dataset", "yields.blobs", Yields, dist="deepseek-yields", description="a generator")
    listed = Trainer(config_from_dict(toy_config(tmp_path), host=host), run_dir=tmp_path / "a", host=host).fit()
    config = config_from_dict(toy_config(tmp_path, data={"name": "yields.blobs"}), host=host)
    yielded = Trainer(config, run_dir=tmp_path / "b", host=host).fit()
    assert yielded.val_metrics == listed.val_metrics and yielded.losses == listed.losses


def test_a_run_keeps_its_plugins_model_when_another_plugin_registers_the_name(host: Any, tmp_path: Path) -> None:
    """Once a second distribution registered 'toyclf.mlp', eval and resume of an old run were
    refused as ambiguous ('registered by both'), though trainer.json records which one it was."""
    from deepseek_toyclf.model import BlobClassifier

    from deepseek.cli.train_cmd import build_train_config
    from deepseek.training.inference import load_trained

    run = Trainer(config_from_dict(toy_config(tmp_path, train={"max_steps": 3}), host=host),
                  run_dir=tmp_path / "run", host=host).fit().run_dir

    register_one(host, "model", "toyclf.mlp", BlobClassifier, dist="deepseek-clash", description="the same name from another distribution")
    assert host.explain("model", "toyclf.mlp").winner is None  # ambiguous for a new config
    model, config, _ = load_trained(run, host=host)
    assert config.plugins.prefer == (DIST,) and type(model).__name__ == "BlobClassifier"
    resumed = build_train_config(None, resume=str(run), max_steps=6, host=host)
    assert resumed.plugins.prefer == (DIST,) and resumed.model.name in ("toyclf.mlp", f"{DIST}:toyclf.mlp")
