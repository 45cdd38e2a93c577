"""Validation bits per byte: the summation (tokens and bytes per batch), what the text dataset
counts for byte tokens (targets ignored by the loss are not counted), and datasets that cannot
say it do not report it. The CLI's ``eval`` output: tests/core/cli/test_train_cmd.py; BPE:
tests/ecosystem/test_bits_per_byte.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from deepseek.data.dataset import PredictedText
from deepseek.data.text import TextDataset, TextOptions
from deepseek.training.evaluation import bits_per_byte, summarize


def result(loss: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return torch.tensor(loss), {"acc": torch.tensor(0.5)}


def test_total_nats_over_total_bytes_not_a_mean_of_ratios() -> None:
    out = summarize([result(1.0), result(3.0)], [PredictedText(10, 20), PredictedText(30, 40)])
    assert out["val_loss"] == 2.0 and out["val_acc"] == 0.5  # means over batches, as before
    # (1 nat x 10 tokens + 3 nats x 30 tokens) / ln 2 / (20 + 40) bytes
    assert out["val_bits_per_byte"] == pytest.approx(100 / math.log(2) / 60, rel=1e-12)
    assert list(out) == ["val_loss", "val_acc", "val_bits_per_byte"]


def test_unknown_bytes_report_nothing() -> None:
    assert "val_bits_per_byte" not in summarize([result(1.0)])
    assert "val_bits_per_byte" not in summarize([result(1.0), result(2.0)], [PredictedText(4, 4), None])
    assert bits_per_byte([1.0], [PredictedText(0, 0)]) is None
    assert bits_per_byte([1.0, 2.0], [PredictedText(4, 4)]) is None  # one text per batch, or nothing


def test_byte_tokens_count_one_byte_per_predicted_target(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("héllo wörld, ünïcode 🙂\n" * 40)
    (tmp_path / "b.txt").write_text("plain ascii text\n" * 40)
    data = TextDataset(TextOptions(path=str(tmp_path), seq_len=16, shuffle_buffer=4), batch_size=3, seed=0)
    batch = data.validation_batches(1)[0]
    assert data.predicted_text(batch) == PredictedText(48, 48)
    targets = batch["targets"].clone()
    targets[0, :5] = -100  # ignored by the loss: neither predicted nor counted
    assert data.predicted_text({**batch, "targets": targets}) == PredictedText(43, 43)
    loss = torch.tensor(2.5)
    out = summarize([(loss, {})], [data.predicted_text(batch)])
    assert out["val_bits_per_byte"] == pytest.approx(2.5 / math.log(2), rel=1e-12)
