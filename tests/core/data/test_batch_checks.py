"""The batch check (``deepseek.data.batch.check_batch``): a batch holding numpy arrays is refused in
one line naming the key (it was carried past the check and failed inside the model's forward,
blamed on the model); strings, numbers and numpy scalars are carried as they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepseek.data.batch import check_batch, check_global_batch
from deepseek.errors import UsageError


def test_a_numpy_array_is_refused_naming_its_key() -> None:
    batch = {"features": np.zeros((4, 3), dtype=np.float32), "label": torch.zeros(4, dtype=torch.long)}
    with pytest.raises(UsageError, match=r"^data: dataset 'acme\.bars', training batch of step 1: batch\['features'\] "
                       r"holds a numpy\.ndarray, which is carried as it is, not as rows; give tensors "
                       r"\(torch\.from_numpy\(array\), or torch\.as_tensor\)$"):
        check_global_batch(batch, dataset="acme.bars", batch_size=4, what="training batch of step 1")
    nested = {"image": {"inputs": np.ones((4, 2))}, "label": torch.zeros(4)}
    with pytest.raises(UsageError, match=r"batch\['image'\] holds a numpy\.ndarray"):
        check_batch(nested, where="x")


def test_strings_numbers_and_numpy_scalars_are_carried() -> None:
    batch = {"x": torch.zeros(4, 2), "source": "corpus.txt", "scale": np.float32(0.5), "n": 3}
    assert check_batch(batch, where="x") == 4
