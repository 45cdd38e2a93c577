"""deepseek.fit / deepseek.evaluate / deepseek run: a script's own nn.Module and torch datasets
trained by the ordinary trainer (single strategy; the multi-process example runs in
tests/ecosystem)."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek.data.dataset import Dataset
from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.script import RunCompleteWarning

CONFIG = {"train": {"max_steps": 60, "lr": 1e-2, "warmup_steps": 5, "eval_interval": 20},
          "checkpoint": {"interval": 20, "keep_last": 5}, "logging": {"progress": False, "plot": False},
          "data": {"eval_batches": 4}}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


def points(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] * x[:, 1] > 0).long())


class Quadrants(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "accuracy": (logits.argmax(-1) == y).float().mean()}


class Stream(torch.utils.data.IterableDataset):
    """An iterable dataset whose order depends on the epoch (set_epoch), as a sharded stream's does."""

    def __init__(self, n: int) -> None:
        self.base, self.epoch = points(n, 0), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # type: ignore[no-untyped-def]
        order = torch.randperm(len(self.base), generator=torch.Generator().manual_seed(100 + self.epoch))
        for i in order.tolist():
            x, y = self.base[i]
            yield {"x": x, "y": y}


def losses(run: Path) -> list[tuple[int, float]]:
    rows = read_metrics(run / "metrics.jsonl")
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


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


SCRIPT = """
import sys
import torch
import deepseek
from deepseek.errors import UsageError
if sys.argv[1:] == ["--fail"]:
    raise UsageError("my-script: --fail given; leave it out")
if sys.argv[1:] == ["--bug"]:
    {}["missing"]
print("args", sys.argv[1:])
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", "--no-plugin-autoload", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_deepseek_run_runs_a_script_as_main_and_reports_its_usage_errors(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The script's own bug in a real process (its exit code and the traceback python prints); the
    rest in this process (conftest's ``deepseek_here``: the same command, no process start)."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT))
    ok = deepseek_here("run", str(script), "--steps", "3", cwd=tmp_path)
    assert ok.returncode == 0 and "args ['--steps', '3']" in ok.stdout, ok.stderr
    bad = deepseek_here("run", str(script), "--fail", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith("my-script: --fail given; leave it out")
    # the script's own bug: its traceback, as python prints it, exit 1 (not deepseek's "internal error")
    bug = run("run", str(script), "--bug", cwd=tmp_path)
    assert bug.returncode == 1 and "internal error" not in bug.stderr
    lines = bug.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "KeyError: 'missing'", bug.stderr
    assert f'File "{script}", line 9, in <module>' in lines[1] and "runpy" not in bug.stderr, bug.stderr
    missing = deepseek_here("run", "nope.py", cwd=tmp_path)
    assert missing.returncode == 2 and "run: 'nope.py' does not exist" in missing.stderr
    (tmp_path / "notes.txt").write_text("x")
    wrong = deepseek_here("run", "notes.txt", cwd=tmp_path)
    assert wrong.returncode == 2 and "is not a .py file" in wrong.stderr
    # sys.exit("message"): exit 1 with the message on stderr, as python gives them (deepseek_here
    # returned the string as the exit code)
    (tmp_path / "bye.py").write_text('import sys\nsys.exit("bye: nothing to do")\n')
    bye = deepseek_here("run", "bye.py", cwd=tmp_path)
    assert bye.returncode == 1 and bye.stderr.strip().splitlines() == ["bye: nothing to do"], bye


def test_the_cli_says_where_a_scripts_model_can_be_evaluated(
        tmp_path: Path, host: PluginHost, deepseek_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=CONFIG,
                 run_dir=tmp_path / "r", host=host)
    out = deepseek_here("eval", "--checkpoint", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 2
    assert "model 'script' is the model object of a Python script trained with deepseek.fit" in out.stderr
    assert "deepseek.evaluate(model, data, checkpoint=RUN)" in out.stderr
    assert "pip install" not in out.stderr and "deepseek-script" not in out.stderr  # no distribution to install
    assert out.stderr.strip().endswith("deepseek.evaluate(model, data, checkpoint=RUN)"), out.stderr
    # what the message offers: the weights loaded into the script's own model
    from deepseek.training.checkpoint import load_model_state

    model = deepseek.load_model(tmp_path / "r", model=Quadrants())
    saved = load_model_state(tmp_path / "r" / "checkpoints" / "step-60")
    assert not model.training and all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    with pytest.raises(deepseek.CheckpointError, match=r"weights do not fit this model"):
        deepseek.load_model(tmp_path / "r", model=nn.Linear(2, 2))
    with pytest.raises(UsageError, match=r"load_model\(model=\): expected the torch\.nn\.Module"):
        deepseek.load_model(tmp_path / "r", model=Quadrants)


@pytest.mark.parametrize(("batch_size", "config_batch", "rows"), [(None, 64, 64), (48, None, 48), (None, None, 32),
                                                                  (16, 16, 16)])
def test_the_batch_size_comes_from_fit_or_the_config(tmp_path: Path, host: PluginHost, batch_size: int | None,
                                                     config_batch: int | None, rows: int) -> None:
    """``[data] batch_size`` in ``config=`` was overridden by fit's default of 32, silently."""
    data = {**CONFIG["data"], **({"batch_size": config_batch} if config_batch is not None else {})}
    config = {**CONFIG, "train": {**CONFIG["train"], "max_steps": 2}, "data": data}
    result = deepseek.fit(Quadrants, points(1024, 0), names=("x", "y"), batch_size=batch_size, config=config,
                          run_dir=tmp_path / "run", host=host)
    steps = [r for r in json_lines(result.run_dir / "metrics.jsonl") if "samples" in r]
    assert [r["samples"] for r in steps] == [rows, 2 * rows]
    assert f"batch_size = {rows}" in (result.run_dir / "config.toml").read_text()


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_max_epochs_sets_the_length_and_an_evaluation_and_checkpoint_per_epoch(tmp_path: Path,
                                                                               host: PluginHost) -> None:
    config = {"logging": {"progress": False, "plot": False}, "checkpoint": {"keep_last": 5}}
    result = deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, max_epochs=3, config=config,
                          run_dir=tmp_path / "run", host=host)
    # 512 samples hold out 51 for validation: 461 train, 15 steps an epoch, 3 epochs 44 steps (ceil(1383 / 32))
    assert result.step == 44
    evaluated = [r["step"] for r in json_lines(result.run_dir / "metrics.jsonl") if "val_loss" in r]
    assert evaluated == [0, 15, 30, 44]
    assert sorted(int(p.name[5:]) for p in (result.run_dir / "checkpoints").glob("step-*")) == [15, 30, 44]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"data": Stream(256), "val_data": points(64, 1), "max_epochs": 2},
     "max_epochs: the data is an IterableDataset (or a deepseek Dataset class), whose length is not known; give "
     "the run's length as config train.max_steps instead"),
    ({"data": points(256, 0), "max_epochs": 2, "config": CONFIG},
     "max_epochs: and the config's train.max_steps = 60 both set the run's length; give one of them"),
    ({"data": points(256, 0), "max_epochs": 0}, "max_epochs: must be a positive integer, got 0"),
])
def test_max_epochs_refusals(tmp_path: Path, host: PluginHost, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as info:
        deepseek.fit(Quadrants, kwargs.pop("data"), names=("x", "y"), run_dir=tmp_path / "run", host=host, **kwargs)
    assert str(info.value) == message
    assert not (tmp_path / "run").exists()


def test_worker_processes_read_the_same_batches_and_resume_the_same(tmp_path: Path, host: PluginHost) -> None:
    """``num_workers`` reads samples in DataLoader workers: the losses equal the main process's,
    across epoch ends (512 samples, 14 steps an epoch), and a resume continues them exactly."""
    config = {**CONFIG, "train": {**CONFIG["train"], "max_steps": 40}}
    plain = deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=config,
                         run_dir=tmp_path / "plain", host=host)
    workers = deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=config,
                           run_dir=tmp_path / "workers", host=host, num_workers=2, pin_memory=True)
    # fit ends its reader processes as it returns: they lived on until a garbage collection,
    # which then waited seconds for them in whatever code ran next
    assert multiprocessing.active_children() == []
    assert losses(workers.run_dir) == losses(plain.run_dir)
    part = {**config, "train": {**config["train"], "max_steps": 20, "decay_steps": 40}}  # the same schedule
    deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=part,
                 run_dir=tmp_path / "part", host=host, num_workers=2)
    resumed = deepseek.fit(Quadrants, points(512, 0), names=("x", "y"), batch_size=32, config=config,
                           host=host, resume=tmp_path / "part", num_workers=2)
    assert losses(resumed.run_dir) == losses(plain.run_dir) and multiprocessing.active_children() == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"data": Stream(256), "val_data": points(64, 1), "num_workers": 2},
     "num_workers: an IterableDataset read by several workers yields every sample once per worker"),
    ({"data": points(256, 0), "num_workers": -1}, "num_workers: must be a whole number >= 0, got -1"),
])
def test_num_workers_refusals(tmp_path: Path, host: PluginHost, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as info:
        deepseek.fit(Quadrants, kwargs.pop("data"), names=("x", "y"), run_dir=tmp_path / "run", host=host,
                     config=CONFIG, **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_prints_nothing_while_the_run_trains(tmp_path: Path, host: PluginHost, quiet: bool,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    # an outside author found `quiet` only among fit's argument checks; python-api.md now says what it does
    config = {**CONFIG, "train": {**CONFIG["train"], "max_steps": 20}, "logging": {"plot": False}}
    result = deepseek.fit(Quadrants, points(400, 0), names=("x", "y"), batch_size=16, config=config,
                          run_dir=tmp_path / "run", host=host, quiet=quiet)
    out, err = capfd.readouterr()
    assert ("val_loss" in out + err) is not quiet
    assert set(result.val_metrics) == {"val_loss", "val_accuracy"}  # the values all the same
    flat = " ".join((Path(__file__).resolve().parents[3] / "docs" / "python-api.md").read_text().split())
    assert "`quiet=True` prints nothing while the run trains: no progress bar and no line per evaluation" in flat


def test_evaluate_with_a_checkpoint_reads_the_runs_eval_batches_unless_batches_says_more(
        tmp_path: Path, host: PluginHost) -> None:
    # an outside author scored a 200-row test split with checkpoint= as plugins.md section 11 showed and
    # got the mean of its first 64 rows (data.batch_size 16 x eval_batches 4); the docs now give batches=
    run = tmp_path / "run"
    deepseek.fit(Quadrants, points(400, 0), names=("x", "y"), batch_size=16, config=CONFIG, run_dir=run, host=host,
                 quiet=True)
    test_rows = points(200, 9)
    trained = deepseek.load_model(run, model=Quadrants())
    first = deepseek.evaluate(trained, torch.utils.data.Subset(test_rows, range(64)), names=("x", "y"))
    every = deepseek.evaluate(trained, test_rows, names=("x", "y"))
    capped = deepseek.evaluate(Quadrants(), test_rows, names=("x", "y"), checkpoint=run)
    whole = deepseek.evaluate(Quadrants(), test_rows, names=("x", "y"), checkpoint=run, batches=len(test_rows))
    assert capped == pytest.approx(first, rel=1e-6) and whole == pytest.approx(every, rel=1e-6)
    assert capped["val_loss"] != pytest.approx(whole["val_loss"], rel=1e-3)
    flat = {name: " ".join((Path(__file__).resolve().parents[3] / "docs" / name).read_text().split())
            for name in ("plugins.md", "python-api.md")}
    assert 'checkpoint="runs/x", batches=len(test_rows))` (docs/python-api.md)' in flat["plugins.md"]
    assert "`batches=len(test_rows)` (any number at least the batches the data holds) reads all of it" in flat[
        "python-api.md"]
