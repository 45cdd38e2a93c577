"""A run's set-up (``run_setup.set_up``) returns what it made, a ``RunSetup`` the trainer keeps,
and writes nothing into the run folder: opening it for writing is the trainer's next part
(``run_open.RunFolder``), so a fresh set-up leaves no folder and a resumed one leaves the
checkpoint's run as it was (``metrics.jsonl`` is cut back only when the folder is opened)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from deepseek.training.engine import StepEngine
from deepseek.training.metrics import read_metrics
from deepseek.training.run_setup import RunSetup, set_up
from deepseek.training.trainer import Trainer


@contextmanager
def _engine(config: Any, host: Any) -> Iterator[StepEngine]:
    """The step engine as the trainer starts it, torn down after."""
    engine = StepEngine(config, host=host)
    engine.setup_environment()
    try:
        yield engine
    finally:
        engine.strategy.teardown()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_fresh_set_up_returns_the_run_and_leaves_no_folder(tiny_config: Callable[..., Any], core_host: Any,
                                                             tmp_path: Path) -> None:
    with _engine(tiny_config(data={"eval_batches": 3}), core_host) as engine:
        made = set_up(engine, run_dir=tmp_path / "run", resume_from=None)
        batch = made.batches.draw(1)
    assert isinstance(made, RunSetup)
    assert made.run_dir == tmp_path / "run" and not made.run_dir.exists()
    assert made.restored is None
    assert made.config is engine.config  # with the options the strategy chose
    assert len(made.val_set) == 3 and len(made.val_texts) == 3
    assert made.generates  # the tiny GPT samples
    assert tuple(batch["input_ids"].shape) == (8, 32)
    assert made.monitor.name == "val_loss"
    assert made.schedule.lr_at(2) == pytest.approx(3e-3)  # the end of the 2 warm-up steps


def test_a_resumed_set_up_restores_the_checkpoint_and_writes_nothing(tiny_config: Callable[..., Any],
                                                                     core_host: Any, tmp_path: Path) -> None:
    config = tiny_config(checkpoint={"interval": 2})
    result = Trainer(config, run_dir=tmp_path / "run", host=core_host).fit()
    before = _files(result.run_dir)
    checkpoint = result.run_dir / "checkpoints" / "step-2"
    with _engine(config, core_host) as engine:
        made = set_up(engine, run_dir=None, resume_from=checkpoint)
    assert made.run_dir == result.run_dir
    restored = made.restored
    assert restored is not None
    assert (restored.step, restored.samples_seen, restored.tokens_seen) == (2, 16, 2 * 8 * 32)
    assert restored.metrics["loss"] == result.losses[1]
    assert restored.config == json.loads((checkpoint / "trainer.json").read_text())["config"]
    assert _files(result.run_dir) == before  # set-up read the run; nothing in it changed
    assert [r["step"] for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]
