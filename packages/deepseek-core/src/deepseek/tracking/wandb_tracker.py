"""The ``wandb`` tracker: a Weights & Biases run, offline unless asked otherwise.

``mode = "auto"`` (the default) is ``$WANDB_MODE`` when set, else online when ``WANDB_API_KEY`` is
set, else offline: the run is written under ``<dir>/wandb/offline-run-*`` and can be uploaded
later with ``wandb sync``. The run records the flattened config (``train.lr``), every metrics row
at its step, and at the end ``loss.png``, ``config.toml`` and ``final_checkpoint.json`` as
artifacts (types ``plot``, ``config``, ``checkpoint``) plus ``final_checkpoint`` /
``final_checkpoint_step`` in the summary. Needs ``wandb`` (``pip install 'deepseek-core[wandb]'``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deepseek.errors import UsageError
from deepseek.parsing import loads_json, read_text
from deepseek.paths import unwritable
from deepseek.tracking.tracker import RunInfo, Status, Tracker, require_library

_EXIT_CODES = {"succeeded": 0, "failed": 1, "stopped": 75}


@dataclass(frozen=True)
class WandbOptions:
    """``[trackers.wandb]``."""

    project: str = "deepseek"
    """W&B project of the run."""
    entity: str = ""
    """W&B user or team (default: the account's own)."""
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    """``auto``: ``$WANDB_MODE`` when set, else ``online`` with ``WANDB_API_KEY`` set, else ``offline``."""
    dir: str = ""
    """Folder W&B writes its ``wandb/`` folder into (default: the run folder); a relative path is
    taken from the current directory."""
    run_name: str = ""
    """Name of the W&B run (default: the run folder's name)."""
    group: str = ""
    """W&B group of the run (e.g. a sweep's name)."""
    tags: tuple[str, ...] = ()
    """Tags of the W&B run."""


def resolved_mode(mode: str) -> str:
    """The W&B mode ``mode`` stands for (see :attr:`WandbOptions.mode`)."""
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


class WandbTracker(Tracker):
    """Logs the run to Weights & Biases."""

    Options = WandbOptions

    def __init__(self, options: WandbOptions | None = None) -> None:
        super().__init__(options)
        self._run: Any = None
        self._name = ""

    @classmethod
    def check(cls, options: WandbOptions) -> None:
        require_library("wandb", "wandb", tracker="wandb")

    def start(self, run: RunInfo) -> None:
        import wandb

        o = self.options
        self._name = o.run_name or run.run_name
        directory = Path(o.dir).resolve() if o.dir else run.run_dir
        directory.mkdir(parents=True, exist_ok=True)
        problem = unwritable(directory)
        if problem is not None:  # wandb would warn and write under /tmp instead
            raise UsageError(f"trackers.wandb.dir: {directory} is not writable ({problem}); give a folder you can "
                             "write")
        self._run = wandb.init(
            project=o.project, entity=o.entity or None, name=self._name, dir=str(directory),
            mode=resolved_mode(o.mode), group=o.group or None, tags=list(o.tags) or None,
            config=dict(run.params), reinit="create_new",
            settings=wandb.Settings(console="off", quiet=True, silent=run.quiet, x_disable_stats=True, save_code=False),
        )

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self._run.log(dict(metrics), step=step)

    def log_artifact(self, path: Path, kind: str) -> None:
        import wandb

        name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self._name}-{kind}")
        artifact = wandb.Artifact(name, type=kind)
        artifact.add_file(str(path), name=path.name)
        self._run.log_artifact(artifact)
        if kind == "checkpoint":
            pointer = loads_json(read_text(path))
            self._run.summary["final_checkpoint"] = pointer["path"]
            self._run.summary["final_checkpoint_step"] = pointer["step"]

    def finish(self, status: Status) -> None:
        if self._run is not None:
            self._run.finish(exit_code=_EXIT_CODES[status])
            self._run = None
