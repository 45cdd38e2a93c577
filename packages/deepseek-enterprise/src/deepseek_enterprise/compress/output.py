"""The run folder ``deepseek compress`` writes: like a trained run's, so that ``deepseek eval``,
``generate``, ``compare`` and ``bench latency --config`` take it with the edition it names.

``<out>/checkpoints/step-N/`` holds ``model.safetensors`` and ``trainer.json`` (the source
checkpoint's state with the compressed ``[model]`` table; no optimizer state: a compressed model
is evaluated or fine-tuned from its weights, not resumed), committed atomically;
``<out>/config.toml`` is the resolved config and ``<out>/compression.json`` says what was done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
