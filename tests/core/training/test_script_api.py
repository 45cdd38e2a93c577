"""deepseek.fit: a script's own nn.Module and torch datasets (or a deepseek Dataset class) trained
by the ordinary trainer (single strategy; the multi-process example runs in tests/ecosystem), resumed,
and its bad arguments refused. The command line on such runs: test_script_cli.py; fit's options
(batch size, epochs, workers, quiet) and deepseek.evaluate(checkpoint=): test_script_fit_options.py."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from _script_parts import CONFIG, Quadrants, Stream, losses, points

import deepseek
from deepseek.data.dataset import Dataset
from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.script import RunCompleteWarning


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


def test_fit_trains_a_scripts_model_and_writes_a_run_folder(tmp_path: Path, host: PluginHost) -> None:
    run = tmp_path / "run"
    result = deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG,
                          run_dir=run, host=host)
    assert result.step == 60 and (run / "checkpoints" / "step-60" / "model.safetensors").is_file()
    assert 'name = "script"' in (run / "config.toml").read_text()
    assert result.val_metrics["val_accuracy"] > 0.8  # held-out 10% of the map-style set
    steps = [loss for _, loss in losses(run)]
    assert sum(steps[-10:]) < 0.9 * sum(steps[:10])
    # deepseek.evaluate loads the checkpoint into a fresh model: the trainer's own validation numbers
    val = torch.utils.data.Subset(points(512, 0), sorted(torch.randperm(512, generator=torch.Generator().manual_seed(0))[:51].tolist()))
    scores = deepseek.evaluate(Quadrants(), val, names=("x", "y"), checkpoint=run, batch_size=32, batches=4)
    assert scores["val_loss"] == pytest.approx(result.val_metrics["val_loss"], rel=1e-6)
    # without batch_size/batches: the run's own (data.batch_size, data.eval_batches), the same numbers
    assert deepseek.evaluate(Quadrants(), val, names=("x", "y"), checkpoint=run) == scores
    assert deepseek.evaluate(Quadrants(), val, names=("x", "y"), checkpoint=run, batch_size=16) != scores
    # a second run of the script into the same folder: refused in the API's words, the run kept
    with pytest.raises(UsageError, match=r"^run_dir: .* already holds a run \(a second run of the script\?\); "
                                         r"continue it with resume="):
        deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG, run_dir=run, host=host)
    assert (run / "checkpoints" / "step-60" / "model.safetensors").is_file()
    # resuming the finished run (a requeued script): warned with the argument named as the script gives
    # it (it named the CLI's --resume), nothing written, and the finished run's result returned (it raised)
    before = (run / "metrics.jsonl").read_bytes()
    with pytest.warns(RunCompleteWarning, match=r"^resume='.*step-60': the run is complete, its checkpoint is at step "
                                                r"60 and train\.max_steps is 60; nothing to train \(raise "
                                                r"train\.max_steps to train further\)$"):
        again = deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG, run_dir=run,
                             host=host, resume=run)
    assert (again.step, again.resumed_at, again.losses, again.run_dir) == (60, 60, [], run)
    assert again.checkpoint == run / "checkpoints" / "step-60"
    assert again.val_metrics == pytest.approx(result.val_metrics) and again.monitor == result.monitor
    assert (run / "metrics.jsonl").read_bytes() == before
    with pytest.raises(UsageError, match=r"no such checkpoint or run folder, so there is nothing to resume .*; leave "
                                         r"out resume= to start the run, or pass a run folder"):
        deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG, host=host,
                     resume=tmp_path / "never")
    # not text: a torch dataset cannot say how many bytes its samples are, so no bits per byte
    assert "val_bits_per_byte" not in scores and "val_bits_per_byte" not in result.val_metrics


class Raises(Quadrants):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("the script's own bug")


def test_what_a_scripts_model_raises_reaches_the_script_as_it_is(tmp_path: Path, host: PluginHost) -> None:
    """It was a PluginError blaming 'model script (deepseek-script 0.0.0)' and telling the user to
    report a bug to the plugin's authors: the script's own code, not a plugin."""
    with pytest.raises(RuntimeError, match="^the script's own bug$") as caught:
        deepseek.fit(Raises, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG, run_dir=tmp_path / "r",
                     host=host)
    assert not isinstance(caught.value, deepseek.PluginError)


def test_a_model_instance_and_a_class_train_alike(tmp_path: Path, host: PluginHost) -> None:
    a = deepseek.fit(Quadrants, points(256, 0), val_data=points(64, 1), names=("x", "y"), batch_size=32,
                     config=CONFIG, run_dir=tmp_path / "a", host=host)
    torch.manual_seed(CONFIG.get("train", {}).get("seed", 1337))  # the trainer seeds before a class is built
    b = deepseek.fit(Quadrants(), points(256, 0), val_data=points(64, 1), names=("x", "y"), batch_size=32,
                     config=CONFIG, run_dir=tmp_path / "b", host=host)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert a.val_metrics == b.val_metrics


def test_a_collate_fn_returning_another_mapping_trains_as_a_dict(tmp_path: Path, host: PluginHost) -> None:
    """Hugging Face's collators return a BatchEncoding, a UserDict: it was refused as 'the batch
    holds no tensors' (torch's pytree does not enter a UserDict)."""
    from collections import UserDict

    def as_user_dict(rows: list[dict[str, torch.Tensor]]) -> UserDict:
        return UserDict(torch.utils.data.default_collate(rows))

    kwargs: dict[str, Any] = {"val_data": points(64, 1), "names": ("x", "y"), "batch_size": 32, "config": CONFIG,
                              "host": host}
    plain = deepseek.fit(Quadrants, points(256, 0), run_dir=tmp_path / "plain", **kwargs)
    wrapped = deepseek.fit(Quadrants, points(256, 0), run_dir=tmp_path / "wrapped", collate_fn=as_user_dict, **kwargs)
    assert losses(tmp_path / "plain") == losses(tmp_path / "wrapped") and plain.val_metrics == wrapped.val_metrics


def test_fit_runs_the_hooks_of_plugins_registered_on_its_host(tmp_path: Path) -> None:
    """fit(host=...) built a new host from the settings alone: a callback registered on the host
    in-process (the way to attach one to fit) never ran."""
    from deepseek import hookimpl

    seen: list[int] = []

    class Callback:
        @hookimpl
        def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
            seen.append(step)

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Callback(), dist="my-callbacks").status == "ok"
    deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, run_dir=tmp_path / "r", host=host,
                 config={**CONFIG, "train": {**CONFIG["train"], "max_steps": 5}})
    assert seen == [1, 2, 3, 4, 5]
    assert "script" not in host.records and "deepseek-script" not in host.records  # the given host is unchanged


@pytest.mark.parametrize("kind", ["map", "iterable"])
def test_resume_continues_with_the_same_batches(tmp_path: Path, host: PluginHost, kind: str) -> None:
    data: Any = points(512, 0) if kind == "map" else Stream(100)  # 100 samples: epochs end mid-batch
    kwargs: dict[str, Any] = {"names": ("x", "y")} if kind == "map" else {"val_data": Stream(64)}
    straight = tmp_path / "straight"
    deepseek.fit(Quadrants, data, batch_size=32, config=CONFIG, run_dir=straight, host=host, **kwargs)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-60")
    shutil.rmtree(resumed / "checkpoints" / "step-40")
    deepseek.fit(Quadrants, data, batch_size=32, config=CONFIG, run_dir=resumed, host=host,
                 resume=resumed / "checkpoints" / "step-20", **kwargs)
    assert losses(resumed) == losses(straight)


class CountingData(Dataset):
    """A deepseek Dataset class passed as data= (its own keys in config["data"])."""

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Options:
        scale: float = 1.0

    def __init__(self, options: Any, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.step = 0

    def _batch(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(self.batch_size, 2, generator=g) * self.options.scale
        return {"x": x, "y": (x[:, 0] > 0).long()}

    def __next__(self) -> dict[str, torch.Tensor]:
        self.step += 1
        return self._batch(self.step)

    def validation_batches(self, limit: int) -> list[dict[str, torch.Tensor]]:
        return [self._batch(-1 - i) for i in range(limit)]

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]


def test_a_deepseek_dataset_class_takes_its_options_from_the_config(tmp_path: Path, host: PluginHost) -> None:
    config = {**CONFIG, "data": {"eval_batches": 2, "scale": 3.0}}
    result = deepseek.fit(Quadrants, CountingData, batch_size=16, config=config, run_dir=tmp_path / "r", host=host)
    assert "scale = 3.0" in (tmp_path / "r" / "config.toml").read_text()
    assert result.val_metrics["val_accuracy"] > 0.8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": points(512, 0)}, "samples are tuples, not mappings; pass names=(...)"),
        ({"data": points(512, 0), "names": ("x",)}, "a sample has 2 part(s) but names has 1"),
        ({"data": "data.csv"}, "data: expected a torch.utils.data.Dataset"),
        ({"data": Stream(64)}, "val_data: an IterableDataset cannot be split"),
        ({"data": points(512, 0), "names": ("x", "y"), "val_data": []},
         "val_data: no validation samples; give at least one"),
        ({"data": points(512, 0), "names": ("x", "y"), "config": {"model": {"name": "tiny"}}},
         "config: [model] comes from the script's objects"),
        ({"data": points(512, 0), "names": ("x", "y"), "batch_size": 0}, "batch_size: must be a positive integer"),
        ({"data": points(512, 0), "names": ("x", "y"), "model": 3}, "model: expected a torch.nn.Module"),
        ({"data": points(512, 0), "names": ("x", "y"), "model": lambda: 3}, "model: the callable returned int"),
        ({"data": CountingData(None, batch_size=32, seed=0)}, "pass the deepseek Dataset class"),
        ({"data": points(512, 0), "names": ("x", "y"), "config": {"train": {"max_step": 3}}},
         "train.max_step: unknown key (did you mean 'max_steps'?)"),
        ({"data": points(512, 0), "names": ("x", "y"), "config": {**CONFIG, "data": {"batch_size": 64}}},
         "batch_size: fit(batch_size=32) and the config's [data] batch_size = 64 differ; give the batch size in one "
         "of them"),
        # what a Hugging Face datasets.Dataset without a torch format gives: Python lists, which torch's
        # collate turned into one tensor per position (the model failed on a list)
        ({"data": [{"x": [0.5, -0.5], "y": 1}] * 512},
         "data: validation batch (its held-out share): sample field 'x' is a Python list, which batches into 2 "
         "tensors (one per position), not a tensor of rows; give tensors (torch.tensor), for a Hugging Face "
         'datasets.Dataset: data.with_format("torch")'),
    ],
)
def test_bad_arguments_are_one_line_and_write_nothing(
    tmp_path: Path, host: PluginHost, kwargs: dict[str, Any], message: str
) -> None:
    args = {"model": Quadrants, "batch_size": 32, "config": CONFIG, "run_dir": tmp_path / "run", "host": host,
            **kwargs}
    with pytest.raises(UsageError) as info:
        deepseek.fit(args.pop("model"), args.pop("data"), **args)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_a_corrupt_saved_position_is_refused(tmp_path: Path, host: PluginHost) -> None:
    run = tmp_path / "run"
    deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG, run_dir=run, host=host)
    state_file = run / "checkpoints" / "step-40" / "trainer.json"
    text = state_file.read_text()
    state = json.loads(text)
    state["data"]["cursor"] = 10_000
    state_file.write_text(json.dumps(state).ljust(len(text)))  # the size its commit record lists
    record = json.loads((state_file.parent / "commit.json").read_text())  # and its checksum
    record["crc32"]["trainer.json"] = f"{zlib.crc32(state_file.read_bytes()):08x}"
    (state_file.parent / "commit.json").write_text(json.dumps(record))
    with pytest.raises(UsageError, match=r"data position: cursor is 10000, expected a whole number >= 0 and <= 461"):
        deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG, run_dir=run,
                     host=host, resume=run / "checkpoints" / "step-40")
    with pytest.raises(UsageError, match=r"cannot resume: it was saved with length=512, this run has 600"):
        deepseek.fit(Quadrants, points(600, 0), names=("x", "y"), batch_size=32, config=CONFIG, run_dir=run,
                     host=host, resume=run / "checkpoints" / "step-20")

