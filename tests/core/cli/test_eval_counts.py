"""``deepseek eval`` says how much validation data it measured: batches, samples (rows) and
tokens, in its human line and its ``--json`` object, and when the validation data held fewer
batches than asked."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from hostile_cli import invoke

from deepseek.data.packed import TokenDataset
from deepseek.plugins.host import PluginHost

# hostile_cli.TINY: data.batch_size = 2, data.seq_len = 16, data.eval_batches = 1


def test_eval_json_counts_batches_samples_and_tokens(trained_run: Path, core_host: PluginHost) -> None:
    out = invoke(["eval", "--checkpoint", str(trained_run), "--json", "--device", "cpu", "--batches", "3"], core_host)
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["batches"], result["samples"], result["tokens"]) == (3, 6, 96)  # 3 x 2 rows x 16 tokens
    assert result["step"] == 1 and "val_loss" in result


def test_eval_human_output_counts_what_it_read(trained_run: Path, core_host: PluginHost) -> None:
    out = invoke(["eval", "--checkpoint", str(trained_run), "--device", "cpu"], core_host)
    assert out.code == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.startswith("val_loss ") and first.endswith("(step 1, model tiny)")
    assert second == "1 batch, 2 samples, 32 tokens"  # data.eval_batches = 1
    more = invoke(["eval", "--checkpoint", str(trained_run), "--device", "cpu", "--batches", "4"], core_host)
    assert more.stdout.splitlines()[1] == "4 batches, 8 samples, 128 tokens"


def test_eval_says_when_the_validation_data_held_fewer_batches(trained_run: Path, core_host: PluginHost,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = TokenDataset.validation_batches
    monkeypatch.setattr(TokenDataset, "validation_batches", lambda self, limit: real(self, min(limit, 2)))
    out = invoke(["eval", "--checkpoint", str(trained_run), "--device", "cpu", "--batches", "5"], core_host)
    assert out.code == 0, out.stderr
    assert out.stdout.splitlines()[1] == "2 batches (of 5 asked: the validation data holds no more), 4 samples, 64 tokens"
    as_json = invoke(["eval", "--checkpoint", str(trained_run), "--device", "cpu", "--batches", "5", "--json"],
                     core_host)
    assert json.loads(as_json.stdout)["batches"] == 2


def test_eval_without_validation_data_is_one_line(trained_run: Path, core_host: PluginHost,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenDataset, "validation_batches", lambda self, limit: [])
    out = invoke(["eval", "--checkpoint", str(trained_run), "--device", "cpu"], core_host)
    assert out.code == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: data: dataset 'text' gave no validation batches; give it validation data (for 'text': a larger "
        "corpus or a higher data.val_fraction)"], out.stderr


def test_weights_read_once_stay_those_of_the_step_they_name(trained_run: Path, core_host: PluginHost,
                                                            tmp_path: Path) -> None:
    """eval reads a run folder once (``read_source``) and loads that source: a checkpoint that
    lands in between (a run still training) changes neither the step it reports nor the weights."""
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from deepseek.training.inference import load_trained
    from deepseek.training.weights_source import read_source

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    source = read_source(run)
    assert source.origin.step == 1
    before, _, state = load_trained(source, host=core_host)
    newer = run / "checkpoints" / "step-2"  # a later checkpoint, written after the source was read
    shutil.copytree(source.origin.path, newer)
    trainer = json.loads((newer / "trainer.json").read_text())
    trainer["step"] = 2
    trainer["config"]["train"]["max_steps"] = 2  # a run extended to 2 steps (a later step than max_steps is refused)
    (newer / "trainer.json").write_text(json.dumps(trainer))
    with safe_open(newer / "model.safetensors", "pt") as f:
        meta = f.metadata()
        weights = {k: f.get_tensor(k) + 1 for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    save_file(weights, newer / "model.safetensors", metadata=meta)
    commit = json.loads((newer / "commit.json").read_text())
    commit["seq"], commit["files"]["trainer.json"] = 2, (newer / "trainer.json").stat().st_size
    commit["crc32"] = {name: f"{zlib.crc32((newer / name).read_bytes()):08x}" for name in commit["files"]}
    (newer / "commit.json").write_text(json.dumps(commit))
    assert read_source(run).origin.step == 2  # the folder now names the newer one
    again, _, state = load_trained(source, host=core_host)
    assert state["step"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), again.state_dict().values(), strict=True))
    newest, _, _ = load_trained(run, host=core_host)  # read afresh: the newer weights
    assert not torch.equal(next(iter(newest.state_dict().values())), next(iter(before.state_dict().values())))
