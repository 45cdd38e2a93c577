"""``precision.master_weights`` at its edges: a checkpoint resumed by an optimizer of another
implementation (torch's fused AdamW), and gradient accumulation over micro-batches that do not
all reach every parameter (a branch not taken: a missing modality, an unused expert)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepseek.errors import ConfigError
from deepseek.training.master_weights import MasterWeightAdamW
from deepseek.training.trainer import Trainer

BF16 = {"precision": {"dtype": "bf16", "master_weights": True}}


def test_a_master_weights_checkpoint_resumes_under_torchs_fused_adamw(tiny_config, tmp_path: Path) -> None:
    # On CUDA the plain path's AdamW is fused (here asked for with optimizer.fused on the CPU).
    # The checkpoint's groups carry no fused = True; had the resumed optimizer taken the saved
    # groups' keys it would run torch's foreach path, which refuses the clip's deferred grad_scale.
    sections = {"train": {"max_steps": 4}, "checkpoint": {"interval": 2}}
    first = Trainer(tiny_config(**sections, **BF16), run_dir=tmp_path / "master").fit()
    trainer = Trainer(tiny_config(**sections, precision={"dtype": "bf16"}, optimizer={"fused": True}),
                      run_dir=tmp_path / "fused", resume=first.run_dir / "checkpoints" / "step-2")
    resumed = trainer.fit()
    optimizer = trainer.strategy.optimizer
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(group["fused"] is True for group in optimizer.param_groups)
    assert len(resumed.losses) == 2
    assert abs(resumed.losses[0] - first.losses[2]) < 5e-3  # it went on from step 2's weights
    assert {float(s["step"]) for s in optimizer.state.values()} == {4.0}


def test_accumulation_keeps_the_gradient_of_a_parameter_some_micro_batches_do_not_reach() -> None:
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    opt = MasterWeightAdamW([a, b], lr=0.1, weight_decay=0.0, accumulation=2)
    for uses_b in ((True, False), (False, True)):  # b only in the first, then only in the last micro-batch
        for with_b in uses_b:
            loss = a.float().sum() + (3 * b.float().sum() if with_b else 0)
            loss.backward()
        assert torch.equal(a.grad, torch.full((4,), 2.0, dtype=torch.bfloat16))
        assert b.grad is not None and torch.equal(b.grad, torch.full((4,), 3.0, dtype=torch.bfloat16))
        opt.zero_grad()
    # a micro-batch left over from a step that was not finished does not count towards the next
    a.float().sum().backward()
    opt.zero_grad()
    a.float().sum().backward()
    assert a.grad is None  # one of two micro-batches so far
    (5 * a.float().sum()).backward()
    assert torch.equal(a.grad, torch.full((4,), 6.0, dtype=torch.bfloat16))


@pytest.mark.parametrize("inner_first", [False, True])
def test_accumulation_refuses_a_backward_inside_the_backward(inner_first: bool) -> None:
    # Reentrant checkpointing runs the block's backward as a backward of its own inside the outer
    # one; its end is not the micro-batch's. Whichever parameter's gradient comes first, it is
    # refused in one line instead of handing a partial sum to the step.
    from torch.utils.checkpoint import checkpoint

    inner, outer = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = MasterWeightAdamW([inner, outer], accumulation=2)

    def loss(reentrant: bool) -> torch.Tensor:
        if inner_first:  # outer's gradient comes after the block's: outer feeds the block
            return checkpoint(lambda t: t * inner.float(), outer.float() * 2, use_reentrant=reentrant).sum()
        y = checkpoint(lambda t: t * inner.float(), torch.ones(3, requires_grad=True), use_reentrant=reentrant)
        return (y * outer.float()).sum()  # outer's gradient comes first

    for _ in range(2):  # non-reentrant checkpointing: one backward per micro-batch, accepted
        loss(False).backward()
    assert inner.grad is not None and outer.grad is not None
    opt.zero_grad()
    with pytest.raises(ConfigError, match=r"^precision.master_weights with train.grad_accum > 1: the model runs a "
                                          r"backward inside its backward \(reentrant activation checkpointing\)"):
        loss(True).backward()
