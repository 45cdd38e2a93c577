"""deepseek.fit's options beside the model and data: batch_size (or the config's), max_epochs,
num_workers, quiet; and deepseek.evaluate with checkpoint= and batches=."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import torch
from _script_parts import CONFIG, Quadrants, Stream, losses, points

import deepseek
from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


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
