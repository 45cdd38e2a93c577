"""Train your own model on your own data from a script, with deepseek's trainer.

The model is a plain ``nn.Module`` whose ``forward(**batch)`` returns the loss (and metrics);
the data are ordinary ``torch.utils.data`` datasets. ``deepseek.fit`` trains it with any
registered strategy, writes checkpoints into a run folder, resumes exactly, and
``deepseek.evaluate`` scores a checkpoint on held-out data:

    deepseek run examples/own_model/train.py                                # one process
    deepseek launch -n 2 -- run examples/own_model/train.py --strategy ddp   # two (deepseek-pro)
    deepseek run examples/own_model/train.py --steps 400 --resume runs/spirals  # train on

Stopped by SIGTERM or SIGUSR1 (a scheduler's preemption), it exits with code 75 after the run's
checkpoint, as ``deepseek train`` does; ``--resume runs/spirals`` continues it.

The task: three interleaved spiral arms in the plane (a classic that a linear model cannot
separate), 3,000 training points and 600 held-out ones, generated here with fixed seeds.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from torch import nn

import deepseek


def spirals(n: int, seed: int, arms: int = 3, noise: float = 0.08) -> torch.utils.data.TensorDataset:
    """``n`` points on ``arms`` spiral arms with Gaussian noise; the label is the arm."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(arms, (n,), generator=g)
    r = torch.rand(n, generator=g)
    angle = 3.5 * r + label * (2 * math.pi / arms)
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1)
    x = x + noise * torch.randn(n, 2, generator=g)
    return torch.utils.data.TensorDataset(x, label)


class SpiralNet(nn.Module):
    """A small MLP classifier; ``forward`` takes the batch's named parts and returns the loss and
    the accuracy (what deepseek logs and evaluates)."""

    def __init__(self, width: int = 64, arms: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, arms))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, label),
                "accuracy": (logits.argmax(-1) == label).float().mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="single", help="single, or with deepseek-pro ddp, fsdp, deepspeed")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps in all (train.max_steps)")
    parser.add_argument("--run-dir", default=None,
                        help="the run folder (default runs/spirals; with --resume, the resumed run's own folder: "
                             "another one continues the run there as a new branch)")
    parser.add_argument("--resume", default=None, help="a run folder or checkpoint to continue")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train, held_out = spirals(3000, seed=0), spirals(600, seed=1)
    result = deepseek.fit(
        SpiralNet,                       # a class (built after seeding on every rank) or an instance
        train,
        val_data=held_out,
        names=("x", "label"),            # TensorDataset yields tuples: name them as forward's arguments
        batch_size=64,
        strategy=args.strategy,
        config={
            "train": {"max_steps": args.steps, "lr": 1e-2, "warmup_steps": 20, "eval_interval": 100},
            "checkpoint": {"interval": 100},
            "logging": {"progress": False},
        },
        run_dir=args.run_dir or (None if args.resume else "runs/spirals"),
        resume=args.resume,
    )
    if result.stopped_by is not None:  # SIGTERM / SIGUSR1: checkpointed; exit 75 so a requeue resumes it
        from deepseek.training.preemption import EXIT_PREEMPTED

        raise SystemExit(EXIT_PREEMPTED)
    if result.is_global_zero:  # one process reports
        scores = deepseek.evaluate(SpiralNet(), held_out, names=("x", "label"), checkpoint=result.run_dir,
                                   batch_size=100)
        print(json.dumps({"run_dir": str(result.run_dir), "step": result.step,
                          "final_train_loss": result.losses[-1] if result.losses else None, **scores}))


if __name__ == "__main__":
    main()
