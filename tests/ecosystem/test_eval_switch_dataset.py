"""``deepseek eval --set data.name=hf`` evaluates a run of the ``text`` dataset on the user's files
(docs/data.md, "Evaluating on other data"): the run's saved ``[data]`` keys that ``hf`` does not
take (``path``, ``pattern``) are left behind, the ones it takes (tokenizer, sequence length,
batch sizes) are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from _eco_cli import ok  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402

SMALL = ["--set", "model.d_model=32", "--set", "model.n_heads=2", "--set", "model.n_layers=1",
         "--set", "model.max_seq_len=32", "--set", "data.seq_len=16", "--set", "data.batch_size=4",
         "--set", "data.eval_batches=2", "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"",
         "--precision", "fp32", "--quiet"]


def test_eval_on_hf_files_of_a_text_run_keeps_its_data_sizes(tmp_path: Path, host: PluginHost) -> None:
    run = tmp_path / "run"
    ok(host, "train", *SMALL, "--max-steps", "1", "--run-dir", str(run))
    assert json.loads((run / "checkpoints" / "step-1" / "trainer.json").read_text())["config"]["data"]["path"] == ""
    for name in ("train.jsonl", "valid.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps({"text": f"{name} {i} " * 20}) + "\n" for i in range(40)))
    got = json.loads(ok(host, "eval", "--checkpoint", str(run), "--json", "--set", "data.name=hf",
                        "--set", f'data.files=["{tmp_path / "train.jsonl"}"]',
                        "--set", f'data.val_files=["{tmp_path / "valid.jsonl"}"]'))
    # the run's data.batch_size 4, data.seq_len 16 and data.eval_batches 2, not the hf defaults
    assert (got["batches"], got["samples"], got["tokens"]) == (2, 8, 128)
