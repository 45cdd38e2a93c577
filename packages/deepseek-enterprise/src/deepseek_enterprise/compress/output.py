"""The run folder ``deepseek compress`` writes: like a trained run's, so that ``deepseek eval``,
``generate``, ``compare`` and ``bench latency --config`` take it with the edition it names.

``<out>/checkpoints/step-N/`` holds ``model.safetensors`` and ``trainer.json`` (the source
checkpoint's state with the compressed ``[model]`` table; no optimizer state: a compressed model
is evaluated or fine-tuned from its weights, not resumed), committed atomically;
``<out>/config.toml`` is the resolved config and ``<out>/compression.json`` says what was done.

The folder is written whole or not at all (:func:`staged_folder`): it is filled beside ``<out>`` as
``.<name>.partial-<pid>`` and renamed onto it at the end, so a killed compress leaves no half run
folder that blocks the retry or that ``deepseek eval`` would take.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepseek import durable


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A folder to fill in place of ``out`` (missing, or an empty folder), renamed onto it when
    the block ends without an exception and removed when it raises. Partial folders that killed
    processes left beside ``out`` are removed first. Where ``out``'s parent cannot be written (an
    existing empty ``out`` in a read-only folder), ``out`` itself is filled."""
    parent = out.absolute().parent
    if not os.access(parent, os.W_OK | os.X_OK):
        yield out
        return
    from deepseek.paths import partial_path, remove_dead_partials

    remove_dead_partials(parent / out.name)
    stage = partial_path(parent / out.name)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        durable.replace(stage, out)  # onto a missing or empty folder, in one step
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_run(out: Path, *, source_state: dict[str, Any], config: Any, compressed: Any, report: dict[str, Any]) -> Path:
    """Write the compressed model's run folder; returns its checkpoint folder."""
    from deepseek.config.load import write_config
    from deepseek.training.checkpoint import (
        MODEL_FILE,
        atomic_write_text,
        commit_checkpoint,
        new_temp_dir,
        save_model_state,
        write_trainer_state,
    )
    from deepseek.training.checkpoint_dirs import step_dir_name

    step = int(source_state.get("step", 0))
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_dir(root, step)
    save_model_state(tmp / MODEL_FILE, compressed.model.state_dict())
    state = {k: v for k, v in source_state.items() if k not in ("format", "format_version")}
    state["config"] = config.to_dict()
    write_trainer_state(tmp, state)
    final = commit_checkpoint(tmp, root / step_dir_name(step))
    write_config(config, out / "config.toml")
    atomic_write_text(out / "compression.json", json.dumps(report, indent=1, default=str))
    return final
