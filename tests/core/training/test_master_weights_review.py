"""``precision.master_weights`` at its edges: a checkpoint resumed by an optimizer of another
implementation (torch's fused AdamW), and gradient accumulation over micro-batches that do not
all reach every parameter (a branch not taken: a missing modality, an unused expert)."""

from __future__ import annotations

from pathlib import Path

import torch

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
