"""Run several training jobs, one after another, inside one torchrun job (test helper).

Usage (under torchrun): ``python tests/pro/_train_jobs.py JOBS.json``. ``JOBS.json`` is a list
of ``{"config": {...TOML-like tables...}, "run_dir": "...", "resume": "..." | null,
"unwrapped": bool}``; each job is run by core's real :class:`~deepseek.training.trainer.Trainer`.
With ``unwrapped``, the strategy's ``unwrapped_model()`` (a collective for sharded strategies) is
written by rank 0 to ``<run_dir>/unwrapped.safetensors`` after training; with ``unwrap_report``,
every rank writes ``<run_dir>/unwrapped-rank<R>.json`` about the model it got: ``diff`` (the
largest difference from the last checkpoint's weights), ``tied`` (``lm_head`` is ``wte``'s
weight) and ``logits`` (the shape of its output for one row of 4 tokens). With ``"late_rank": R``, rank R
looks up the run's checkpoints in its resume's set-up (``restore``'s ``best_checkpoint``, after the
strategy's load and its collectives) only once rank 0 holds the run folder's lock (at most
:data:`LATE_S` later), as a slow rank does, and writes the seconds that lookup took to
``<run_dir>/lookup-rank<R>.json``. One gloo process group is created
first and shared by every job (a strategy reuses an existing group and leaves it alone), so the
jobs pay for interpreter start-up, imports and rendezvous once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

LATE_S = 1.0
"""Longest the late rank waits for rank 0 to hold the run folder (it never does first where every
rank must arrive before it takes the lock)."""


@contextmanager
def _late(rank: int, run_dir: Path) -> Any:
    """Rank ``rank``'s ``best_checkpoint`` lookups (a resume's set-up makes one) start once rank 0
    holds ``run_dir``'s lock, or after :data:`LATE_S`; the seconds the first took go to
    ``run_dir/lookup-rank<rank>.json``."""
    import torch.distributed as dist

    from deepseek.training import checkpoint
    from deepseek.training.run_lock import LOCK_FILE, is_held

    real = checkpoint.best_checkpoint
    timed = run_dir / f"lookup-rank{rank}.json"

    def best_checkpoint(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + LATE_S
        while not is_held(run_dir / LOCK_FILE) and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            if not timed.exists():
                timed.write_text(json.dumps(time.monotonic() - started), encoding="utf-8")

    checkpoint.best_checkpoint = best_checkpoint if dist.get_rank() == rank else real
    try:
        yield
    finally:
        checkpoint.best_checkpoint = real


def main(spec: str) -> None:
    import torch
    import torch.distributed as dist

    from deepseek.config.load import config_from_dict
    from deepseek.training.checkpoint import load_model_state, save_model_state
    from deepseek.training.trainer import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for job in json.loads(Path(spec).read_text(encoding="utf-8")):
            config = config_from_dict(job["config"])
            trainer = Trainer(config, run_dir=job["run_dir"], resume=job.get("resume"), quiet=True)
            with _late(job["late_rank"], Path(job["run_dir"])) if job.get("late_rank") is not None else nullcontext():
                result = trainer.fit()
            if job.get("unwrapped") or job.get("unwrap_report"):
                model = trainer.strategy.unwrapped_model()
                if job.get("unwrapped") and dist.get_rank() == 0:
                    save_model_state(Path(job["run_dir"]) / "unwrapped.safetensors", model.state_dict())
                if job.get("unwrap_report"):
                    saved = load_model_state(result.checkpoint / "model.safetensors")
                    report = {"diff": max((model.state_dict()[k] - v).abs().max().item() for k, v in saved.items()),
                              "tied": model.lm_head.weight is model.wte.weight,
                              "logits": list(model(torch.zeros(1, 4, dtype=torch.long)).shape)}
                    out = Path(job["run_dir"]) / f"unwrapped-rank{dist.get_rank()}.json"
                    out.write_text(json.dumps(report), encoding="utf-8")
            dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    # Leave past the C++ destructors, as deepseek launch's workers do: a process that ends with
    # DeepSpeed's or gloo's threads alive can abort in them ("terminate called without an active
    # exception"), turning a finished probe into a failed torchrun.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
