"""The ``tensorboard`` tracker reads an artefact (``config.toml``, ``loss.png``) once through
``deepseek.parsing``: a FIFO in its place (or a file past 16 MiB) fails that one call, which the
tracker session turns into a warning, never waited on; a regular file is logged as before."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.parsing import UnreadableFile
from deepseek.tracking.tensorboard_tracker import TensorBoardOptions, TensorBoardTracker
from deepseek.tracking.tracker import RunInfo


def test_an_artefact_that_is_a_fifo_fails_its_call_unread(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    from matplotlib import pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TensorBoardTracker(TensorBoardOptions())
    tracker.start(RunInfo(run_dir=tmp_path, run_name="r"))
    try:
        (tmp_path / "config.toml").write_text("[train]\nmax_steps = 3\n")
        tracker.log_artifact(tmp_path / "config.toml", "config")
        plt.imsave(tmp_path / "loss.png", [[0.0, 1.0], [1.0, 0.5]])
        tracker.log_artifact(tmp_path / "loss.png", "plot")
        for name, kind in (("final_checkpoint.json", "checkpoint"), ("plot.png", "plot")):
            os.mkfifo(tmp_path / name)
            with pytest.raises(UnreadableFile, match=r"not a regular file \(a FIFO, device or socket\)"):
                past_fifo(tmp_path / name, lambda n=name, k=kind: tracker.log_artifact(tmp_path / n, k))
    finally:
        tracker.finish("completed")
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert events.Tags()["images"] == ["loss"]
    assert "config.toml/text_summary" in events.Tags()["tensors"]
