"""Packed batches: shapes, shift, separators, determinism, resume, epochs, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepseek.data import SEPARATOR, PackedBatches, TextCorpus, open_corpus, path_corpus
from deepseek.data.loader import TokenStream
from deepseek.errors import UsageError


@pytest.fixture(scope="module")
def stdlib() -> TextCorpus:
    return open_corpus()


def _take(it: PackedBatches, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(it) for _ in range(n)]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True))


def test_shapes_and_shift(stdlib: TextCorpus) -> None:
    x, y = next(PackedBatches(stdlib, 64, 8, shuffle_buffer=32))
    assert x.shape == y.shape == (8, 64) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert 0 <= int(x.min()) and int(x.max()) < 256


def test_deterministic_per_seed(stdlib: TextCorpus) -> None:
    a = _take(PackedBatches(stdlib, 32, 4, seed=1, shuffle_buffer=16), 6)
    b = _take(PackedBatches(stdlib, 32, 4, seed=1, shuffle_buffer=16), 6)
    c = _take(PackedBatches(stdlib, 32, 4, seed=2, shuffle_buffer=16), 6)
    assert _same(a, b) and not _same(a, c)


@pytest.mark.parametrize("consumed", [0, 1, 3, 4, 7])
def test_resume_yields_the_same_next_batches(stdlib: TextCorpus, consumed: int) -> None:
    # shuffle_buffer=10 rows with batch 4: batches straddle block boundaries.
    ref = PackedBatches(stdlib, 16, 4, seed=5, shuffle_buffer=10)
    _take(ref, consumed)
    state = json.loads(json.dumps(ref.state_dict()))
    expected = _take(ref, 6)
    resumed = PackedBatches(stdlib, 16, 4, seed=5, shuffle_buffer=10)
    resumed.load_state_dict(state)
    assert _same(_take(resumed, 6), expected)


def test_resume_refuses_other_settings(stdlib: TextCorpus, tmp_path: Path) -> None:
    state = PackedBatches(stdlib, 16, 4, seed=5).state_dict()
    with pytest.raises(UsageError, match="seq_len=16"):
        PackedBatches(stdlib, 32, 4, seed=5).load_state_dict(state)
    (tmp_path / "a.txt").write_text("hello world " * 50)
    with pytest.raises(UsageError, match="corpus changed"):
        PackedBatches(path_corpus(tmp_path), 16, 4, seed=5).load_state_dict(state)


def _small_corpus(tmp_path: Path) -> TextCorpus:
    for i in range(6):
        (tmp_path / f"f{i}.txt").write_bytes(bytes([65 + i]) * 50)
    return TextCorpus(tmp_path, [f"f{i}.txt" for i in range(6)], name="small", val_fraction=0.0)


def test_epochs_visit_every_byte_with_separators(tmp_path: Path) -> None:
    corpus = _small_corpus(tmp_path)  # 6 files x (50 bytes + separator) = 306 tokens per epoch
    it = PackedBatches(corpus, 17, 2, seed=0, shuffle_buffer=1)  # no row shuffling
    stream = []
    while it.epoch == 0:
        x, y = next(it)
        stream.extend(x.flatten().tolist())
    first_epoch = stream[:306]
    assert first_epoch.count(SEPARATOR) == 6
    for i in range(6):
        assert first_epoch.count(65 + i) == 50
    assert it.epoch == 1


def test_epoch_orders_differ(tmp_path: Path) -> None:
    corpus = _small_corpus(tmp_path)
    stream = TokenStream(corpus.pieces("train"), seed=0, shuffle=True, endless=True)
    orders = []
    for epoch in range(4):
        tokens = stream.read(306).tolist()
        assert stream.position == (epoch, 6, 0)
        orders.append(tuple(tokens[i * 51] for i in range(6)))
    assert all(sorted(o) == [65, 66, 67, 68, 69, 70] for o in orders)
    assert len(set(orders)) > 1


def test_rows_are_shuffled_within_a_block(stdlib: TextCorpus) -> None:
    x, y = next(PackedBatches(stdlib, 16, 8, seed=0, shuffle_buffer=1))
    # Unshuffled rows are consecutive: the last target of row i is the first input of row i+1.
    assert torch.equal(y[:-1, -1], x[1:, 0])
    shuffled = next(PackedBatches(stdlib, 16, 8, seed=0, shuffle_buffer=64))[0]
    assert not torch.equal(x, shuffled)


def test_validation_is_finite_fixed_and_seed_independent(stdlib: TextCorpus) -> None:
    val = PackedBatches(stdlib, 128, 64, split="val")
    n = sum(1 for _ in val)
    assert n == (stdlib.num_bytes("val") + len(stdlib.pieces("val"))) // (128 * 64)
    a = PackedBatches(stdlib, 32, 4, seed=1).val_batches(3)
    b = PackedBatches(stdlib, 32, 4, seed=9).val_batches(3)
    assert _same(a, b) and len(a) == 3
    first = next(iter(PackedBatches(stdlib, 32, 4, split="val")))
    assert torch.equal(first[0], a[0][0])


def test_val_batches_repeat_a_short_stream(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("abcdefghij" * 10)
    batches = PackedBatches(path_corpus(f, val_fraction=0.1), 8, 2).val_batches(5)
    assert len(batches) == 5 and all(x.shape == (2, 8) for x, _ in batches)


def test_no_validation_data_is_a_usage_error(tmp_path: Path) -> None:
    corpus = _small_corpus(tmp_path)
    with pytest.raises(UsageError, match="val_fraction"):
        PackedBatches(corpus, 8, 2).val_batches(1)


def test_bad_shapes_are_usage_errors(stdlib: TextCorpus) -> None:
    with pytest.raises(UsageError, match="data.seq_len"):
        PackedBatches(stdlib, 0, 2)
