"""``multimodal.classifier`` on a plugin's dataset in which audio is present in some batches only
(registered through the public host API, batches of the layout of docs/multimodal.md section 1):

- a training step whose batch has no audio leaves ``accuracy_audio`` (and the recall of audio's
  pairs) out of its record instead of logging 0.0;
- ``train.monitor = "val_accuracy_audio"`` is accepted though the first validation batch has no
  audio (the other batches have it), and is still refused where no validation batch has it;
- ``deepseek multimodal eval`` reads the run (it refused any dataset but ``multimodal.digits``)
  and agrees with ``deepseek eval`` on the same batches;
- in-batch recall needs two samples to retrieve among: one sample alone is not "recall 1.0", and
  ``deepseek compare``, which evaluates one row at a time, names recall as not compared."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _hosts import registering
from _inprocess import deepseek_here

from deepseek.data.dataset import Dataset
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread, the count put back after each test

ROWS, FRAMES, BYTES, CLASSES = 8, 6, 8, 4


@dataclass(frozen=True)
class PartialOptions:
    audio_in_validation: str = "later"
    """``later``: validation batches 2 and 3 have audio (in half their rows), batch 1 none;
    ``none``: no validation batch has audio."""


class Partial(Dataset):
    """Random images, frames and bytes; the class is the image's mean pixel's quartile. Training
    batch ``i`` (from 1) has audio in every row when ``i`` is even, in none when it is odd."""

    Options = PartialOptions

    def __init__(self, options: PartialOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.index = 0

    @classmethod
    def model_num_classes(cls, options: PartialOptions) -> int:
        return CLASSES

    def _batch(self, seed: int, audio: torch.Tensor) -> dict[str, Any]:
        g = torch.Generator().manual_seed(seed)
        b = self.batch_size
        pixels = torch.rand(b, 1, 8, 8, generator=g)
        label = (pixels.mean((1, 2, 3)) * CLASSES * 2 - CLASSES / 2).clamp(0, CLASSES - 1).long()
        none = torch.zeros(b, FRAMES, dtype=torch.bool)
        return {"vision": {"inputs": pixels},
                "audio": {"inputs": torch.randn(b, FRAMES, 13, generator=g), "padding_mask": none},
                "text": {"inputs": torch.randint(32, 127, (b, BYTES), generator=g),
                         "padding_mask": torch.zeros(b, BYTES, dtype=torch.bool)},
                "present": {"vision": torch.ones(b, dtype=torch.bool), "audio": audio,
                            "text": torch.ones(b, dtype=torch.bool)},
                "label": label}

    def __next__(self) -> dict[str, Any]:
        self.index += 1
        return self._batch(self.seed * 1000 + self.index, torch.full((self.batch_size,), self.index % 2 == 0))

    def validation_batches(self, limit: int) -> list[dict[str, Any]]:
        later = self.options.audio_in_validation == "later"
        halves = torch.arange(self.batch_size) % 2 == 0
        return [self._batch(10**6 + i, halves if later and i > 0 else torch.zeros(self.batch_size, dtype=torch.bool))
                for i in range(min(limit, 3))]

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.index = int(state["index"])


CONFIG = """
[model]
name = "multimodal.classifier"
fusion = "late"
aux_loss_weight = 0.5
contrastive_weight = 0.1
fusion_options = {{d_model = 8}}
vision = {{embed_dim = 8, depths = [1], num_heads = [1]}}
audio = {{d_model = 8, n_heads = 2, n_layers = 1}}
text = {{d_model = 8, n_heads = 2, n_layers = 1, max_seq_len = 8}}
[data]
name = "acme.partial"
batch_size = 8
eval_batches = 3
audio_in_validation = "{audio}"
[train]
max_steps = 4
eval_interval = 2
{monitor}
[strategy]
name = "single"
device = "cpu"
[logging]
plot = false
progress = false
"""
MONITOR = 'monitor = "val_accuracy_audio"\nmonitor_mode = "max"'


@pytest.fixture(scope="module")
def host() -> PluginHost:
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"})))
    record = host.register_plugin(registering("deepseek_register_datasets", {"acme.partial": Partial}),
                                  dist="deepseek-acme", version="1.0")
    assert record.status == "ok", record.reason
    return host


def _train(work: Path, host: PluginHost, *, audio: str = "later", monitor: str = "") -> tuple[int, str]:
    (work / "mm.toml").write_text(CONFIG.format(audio=audio, monitor=monitor))
    mp = pytest.MonkeyPatch()
    try:
        code, err, _ = deepseek_here(mp, work, "train", "mm.toml", "--run-dir", "run", host=host)
    finally:
        mp.undo()
    return code, err


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, host: PluginHost) -> Path:
    """A 4-step run on the plugin's data."""
    work = tmp_path_factory.mktemp("partial")
    code, err = _train(work, host)
    assert code == 0, err
    return work


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "run" / "metrics.jsonl").read_text().splitlines()]


def test_a_step_without_audio_leaves_its_audio_metrics_out(run: Path) -> None:
    steps = {r["step"]: r for r in _records(run) if "loss" in r}
    audio = ("accuracy_audio", "recall_vision_audio", "recall_audio_text")
    for step in (1, 3):  # odd training batches: no audio (before: accuracy_audio 0.0, recall 0.0)
        assert not set(audio) & set(steps[step]), steps[step]
        assert 0.0 <= steps[step]["accuracy_vision"] <= 1.0 and 0.0 <= steps[step]["recall_vision_text"] <= 1.0
    for step in (2, 4):
        assert all(0.0 <= steps[step][k] <= 1.0 for k in audio), steps[step]


def test_a_monitor_on_audio_looks_past_the_first_validation_batch(tmp_path: Path, host: PluginHost) -> None:
    code, err = _train(tmp_path, host, monitor=MONITOR)  # refused before: the first batch has no audio
    assert code == 0, err
    evaluations = [r for r in _records(tmp_path) if "val_loss" in r]
    assert [r["step"] for r in evaluations][-2:] == [2, 4]
    assert all(0.0 <= r["val_accuracy_audio"] <= 1.0 for r in evaluations)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-4" / "trainer.json").read_text())
    assert state["monitor"]["best"] == pytest.approx(max(r["val_accuracy_audio"] for r in evaluations))


def test_a_monitor_on_audio_no_validation_batch_has_is_refused_before_writing(tmp_path: Path,
                                                                              host: PluginHost) -> None:
    code, err = _train(tmp_path, host, audio="none", monitor=MONITOR)
    assert code == 2 and err.startswith(
        "error: train.monitor: 'val_accuracy_audio' is not an evaluation value of this run (did you mean "), err
    assert not (tmp_path / "run").exists()


def test_multimodal_eval_reads_a_plugin_datasets_run(run: Path, monkeypatch: pytest.MonkeyPatch,
                                                     host: PluginHost) -> None:
    code, err, out = deepseek_here(monkeypatch, run, "multimodal", "eval", "--checkpoint", "run", "--json",
                                   host=host)
    assert code == 0, err
    report = json.loads(out)
    assert (report["split"], report["samples"], report["step"]) == ("val", 3 * ROWS, 4)
    code, err, out = deepseek_here(monkeypatch, run, "eval", "--checkpoint", "run", "--json", host=host)
    assert code == 0, err
    values = json.loads(out)
    # audio in 8 of the 24 rows: both count its own accuracy over those rows (own label: the class)
    assert {k: report[k] for k in ("accuracy", "accuracy_audio", "accuracy_text", "accuracy_vision")} == \
        pytest.approx({k: values[f"val_{k}"] for k in ("accuracy", "accuracy_audio", "accuracy_text",
                                                        "accuracy_vision")}, abs=1e-6)
    assert sum(map(sum, report["confusion"])) == 3 * ROWS
    code, err, out = deepseek_here(monkeypatch, run, "multimodal", "eval", "--checkpoint", "run", "--missing",
                                   "audio", "--json", host=host)
    assert code == 0, err
    hidden = json.loads(out)
    assert hidden["missing"] == ["audio"] and "accuracy_audio" not in hidden
    assert hidden["accuracy_vision"] == report["accuracy_vision"]  # late fusion: each head reads its own
    code, err, _ = deepseek_here(monkeypatch, run, "multimodal", "eval", "--checkpoint", "run", "--split", "test",
                                 host=host)
    assert code == 2 and err == ("error: --split test: dataset 'acme.partial' gives validation batches only (a "
                                 "held-out test split is multimodal.digits'); use --split val"), err


def test_recall_needs_two_samples_to_retrieve_among() -> None:
    """One sample's own embedding is the only candidate: recall read 1.0 whatever the model
    (``deepseek compare``, one row per forward, reported recall 1.0 for every model)."""
    from deepseek_enterprise.alignment import retrieval_recall
    from deepseek_enterprise.modality_metrics import recall_totals, whole_set_metrics

    g = torch.Generator().manual_seed(0)
    pooled = {m: torch.randn(1, 8, generator=g) for m in ("vision", "audio")}
    present = {m: torch.ones(1, dtype=torch.bool) for m in pooled}
    recall = retrieval_recall(pooled, present, ["vision", "audio"])
    assert torch.isnan(recall["recall_vision_audio"])  # not measured: left out of the step record
    totals = recall_totals(pooled, present, ["vision", "audio"])
    assert float(totals["recall_rows_vision_audio"]) == 0.0
    sums = {**totals, "scored_vision": torch.tensor(1.0), "right_vision": torch.tensor(1.0),
            "scored_audio": torch.tensor(1.0), "right_audio": torch.tensor(0.0)}
    assert "recall_vision_audio" not in whole_set_metrics(sums, ["vision", "audio"], aux_loss_weight=0.0,
                                                          contrastive_weight=0.1)


def test_compare_leaves_out_recall_which_no_single_example_measures(run: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     host: PluginHost) -> None:
    """Before, every model's recall_<a>_<b> read 1.0 here: each example is compared alone, and its
    own embedding was the only candidate for its retrieval."""
    code, err, out = deepseek_here(monkeypatch, run, "compare", "run", "run", "--resamples",
                                   "100", "--latency-runs", "0", "--json", "-", host=host)
    assert code == 0, err
    report = json.loads(out)
    names = [r["name"] for r in report["paired"]]
    assert not [n for n in names if n.startswith("recall_")] and "accuracy_audio" in names, names
    assert report["not_compared"] == ["recall_audio_text", "recall_vision_audio", "recall_vision_text"]
    code, err, out = deepseek_here(monkeypatch, run, "compare", "run", "run", "--resamples",
                                   "100", "--latency-runs", "0", host=host)
    assert code == 0 and ("not compared (measured over a batch's rows, on no single example; deepseek eval "
                          "reports them): recall_audio_text, recall_vision_audio, recall_vision_text") in out, err
