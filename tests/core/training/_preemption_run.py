"""The ``deepseek train`` command line and the in-process run of the stop-signal and run-folder
lock tests (test_preemption.py, test_run_folder_lock.py): a 2-layer GPT on the CPU, dropout on,
no checkpoint but the last."""

from __future__ import annotations

STEPS = 40
CLI_ARGS = [
    "--max-steps", str(STEPS), "--run-dir", "run", "--quiet",
    "--set", "model.d_model=32", "--set", "model.n_heads=2", "--set", "model.n_layers=2",
    "--set", "model.max_seq_len=32", "--set", "model.dropout=0.1", "--set", "data.seq_len=32",
    "--set", "data.batch_size=8", "--set", "data.eval_batches=1", "--set", "train.eval_interval=0",
    "--set", "train.warmup_steps=2", "--set", "logging.plot=false", "--set", "checkpoint.interval=0",
    "--set", 'strategy.name="single"', "--set", 'strategy.device="cpu"',
]
RUN = {"model": {"dropout": 0.1}, "train": {"max_steps": 6, "decay_steps": 6}, "checkpoint": {"interval": 0}}
