"""deepseek's repetition penalty is transformers' ``RepetitionPenaltyLogitsProcessor``: the same
logits for random scores and token histories, and the same greedy token."""

from __future__ import annotations

import pytest
import torch

from deepseek.models.decoding import penalize_repeats, sample_next

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize(("penalty", "seed"), [(1.2, 0), (0.8, 1), (3.0, 2), (1.0, 3)])
def test_penalty_equals_transformers_processor(penalty: float, seed: int) -> None:
    from transformers import RepetitionPenaltyLogitsProcessor

    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(4, 100, generator=gen) * 4
    input_ids = torch.randint(0, 100, (4, 30), generator=gen)  # with repeats inside a row
    expected = RepetitionPenaltyLogitsProcessor(penalty)(input_ids, scores.clone())
    seen = torch.zeros(4, 100, dtype=torch.bool).scatter_(1, input_ids, True)
    ours = penalize_repeats(scores, seen, penalty)
    assert torch.equal(ours, expected)
    assert torch.equal(sample_next(scores, 0.0, None, None, repetition_penalty=penalty, seen=seen),
                       expected.argmax(-1, keepdim=True))
    if penalty != 1.0:
        assert not torch.equal(ours, scores)
