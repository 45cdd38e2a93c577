"""A run whose saved ``[data]`` no longer loads: each command's line names only what that command
takes for other data. ``deepseek compare`` names its ``--data`` (and with ``--data`` the runs' own
data is not read at all); ``deepseek compress``, ``export`` (a serving model) and ``multimodal
eval``, which take no other data, say to restore the run's. Before, every command named ``deepseek
eval``'s ``--config FILE or --set data.KEY=VALUE``, and ``compress --set`` takes compressor options."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
import tomli_w
from _compresshelpers import CONFIG
from _inprocess import deepseek_here
from test_quantize import MULTIMODAL

DAMAGE = ("error: run/checkpoints/step-2/trainer.json (the checkpoint's [data]): data.seq_len: expected an integer, "
          "got 'long' (str); ")


def trained_then_damaged(work: Path, monkeypatch: pytest.MonkeyPatch, config: dict, key: str, value: str) -> Path:
    """``work/run``, two steps of ``config`` (written to ``work/c.toml``), whose checkpoint's saved
    ``data.<key>`` is ``value``, its commit record following (a complete checkpoint)."""
    (work / "c.toml").write_text(tomli_w.dumps({**config, "train": {**config["train"], "max_steps": 2}}))
    assert deepseek_here(monkeypatch, work, "train", "c.toml", "--run-dir", "run", "--quiet")[0] == 0
    step = work / "run" / "checkpoints" / "step-2"
    state = json.loads((step / "trainer.json").read_text())
    state["config"]["data"][key] = value
    body = json.dumps(state).encode()
    (step / "trainer.json").write_bytes(body)
    commit = json.loads((step / "commit.json").read_text())
    commit["files"]["trainer.json"], commit["crc32"]["trainer.json"] = len(body), f"{zlib.crc32(body):08x}"
    (step / "commit.json").write_text(json.dumps(commit))
    return work


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny GPT's run whose saved ``data.seq_len`` is ``'long'``, and ``c.toml``, its config."""
    return trained_then_damaged(tmp_path, monkeypatch, CONFIG, "seq_len", "long")


def refused(monkeypatch: pytest.MonkeyPatch, work: Path, *args: str) -> str:
    code, err, _ = deepseek_here(monkeypatch, work, *args)
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_compress_says_to_restore_the_runs_data(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = refused(monkeypatch, work, "compress", "--checkpoint", "run", "--method", "quantize.int8", "--out", "q",
                  "--latency-runs", "0", "--device", "cpu")
    assert err == DAMAGE + "the run's own data is read: restore it (its files at their recorded paths)"
    assert not (work / "q").exists()


def test_compare_names_its_data_option_which_then_works(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = refused(monkeypatch, work, "compare", "run", "run", "--latency-runs", "0", "--device", "cpu")
    assert err == DAMAGE + "evaluate on other data with --data CONFIG.toml"
    code, err, out = deepseek_here(monkeypatch, work, "compare", "run", "run", "--data", "c.toml", "--latency-runs",
                                   "0", "--device", "cpu", "--json", "-")
    assert code == 0, err
    assert json.loads(out[out.index("{"):])["data"] == "c.toml"


def test_export_of_a_serving_model_and_multimodal_eval_say_to_restore_the_runs_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A serving model is traced on its run's first validation rows, and multimodal eval reads its
    run's dataset: the run's data must load, and neither takes other data."""
    work = trained_then_damaged(tmp_path, monkeypatch, MULTIMODAL, "batch_size", "many")
    line = ("error: run/checkpoints/step-2/trainer.json (the checkpoint's [data]): data.batch_size: expected an "
            "integer, got 'many' (str); the run's own data is read: restore it (its files at their recorded paths)")
    assert refused(monkeypatch, work, "export", "--checkpoint", "run", "--out", "mm.pt2") == line
    assert not (work / "mm.pt2").exists()
    assert refused(monkeypatch, work, "multimodal", "eval", "--checkpoint", "run", "--device", "cpu") == line
