"""The ``tensorboard`` tracker: TensorBoard event files in the run folder (``<run>/tensorboard``).

Every metric is a scalar at its step; the flattened config is a text summary at start; at the end
``loss.png`` is an image and ``config.toml`` / ``final_checkpoint.json`` are text summaries.
Needs the ``tensorboard`` package (``pip install 'deepseek-core[tensorboard]'``); writes through
``torch.utils.tensorboard``. ``logging.tensorboard = true`` is the old spelling of
``logging.trackers = ["tensorboard"]``. A resumed run's points replace, in TensorBoard, those the
folder's older event files hold from its first step on (see ``start``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek.parsing import read_file, read_text
from deepseek.tracking.tracker import RunInfo, Status, Tracker, require_library


@dataclass(frozen=True)
class TensorBoardOptions:
    """``[trackers.tensorboard]``."""

    log_dir: str = "tensorboard"
    """Folder of the event files; a relative path is taken from the run folder."""


class TensorBoardTracker(Tracker):
    """Writes the run's metrics and artefacts as TensorBoard summaries."""

    Options = TensorBoardOptions

    def __init__(self, options: TensorBoardOptions | None = None) -> None:
        super().__init__(options)
        self._writer: Any = None
        self._step = 0

    @classmethod
    def check(cls, options: TensorBoardOptions) -> None:
        require_library("tensorboard", "tensorboard", tracker="tensorboard")

    def start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Every run starts its event file with a restart marker at the first step it logs (0, or
        # the step after a resumed run's checkpoint): TensorBoard then drops the points that the
        # folder's older event files hold from that step on (a killed run's steps past its
        # checkpoint), so the line is one curve, as metrics.jsonl is, rather than doubling back.
        # A fresh run writes one too: TensorBoard's server ignores a folder's first marker.
        first_step = run.start_step + 1 if run.start_step > 0 else 0
        self._writer = SummaryWriter(log_dir=str(run.run_dir / self.options.log_dir), purge_step=first_step)
        self._step = run.start_step
        rows = "\n".join(f"| {k} | {v} |" for k, v in run.params.items())
        self._writer.add_text("config", f"| key | value |\n|---|---|\n{rows}", run.start_step)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)
        self._step = step

    def log_artifact(self, path: Path, kind: str) -> None:
        # read once through deepseek.parsing.read_file (a regular file, 16 MiB at most): a FIFO or a
        # huge file in its place fails this call, which the session warns of, never waited on
        if kind == "plot":
            from matplotlib.image import imread

            image = imread(io.BytesIO(read_file(path)), format="png")
            self._writer.add_image(path.stem, image[..., :3], self._step, dataformats="HWC")
        else:
            self._writer.add_text(path.name, "```\n" + read_text(path) + "\n```", self._step)

    def finish(self, status: Status) -> None:
        if self._writer is not None:
            self._writer.add_text("status", status, self._step)
            self._writer.close()
            self._writer = None
