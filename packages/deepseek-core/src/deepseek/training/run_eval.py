"""A trained model scored on its own validation data: ``deepseek eval --checkpoint RUN`` and, from
Python, ``deepseek.evaluate(checkpoint=RUN)`` (:func:`deepseek.training.script_eval.evaluate`).

:func:`evaluate_run` is the one implementation: it reads the weights once (a run folder's newest
complete checkpoint, a checkpoint folder, exported weights or import-hf's folder), builds the model
its config names, and evaluates it on that config's validation data (or the data ``data`` chooses:
the command's ``--config`` / ``--set``) as :func:`~deepseek.training.inference.evaluate_validation`
does. The command prints its report from what this returns; Python takes the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from deepseek.plugins.host import PluginHost
    from deepseek.training.inference import Evaluated
    from deepseek.training.weights_source import DataChoice, WeightsOrigin


@dataclass(frozen=True)
class RunEvaluation:
    """What :func:`evaluate_run` measured, on which weights and how much data."""

    evaluated: Evaluated
    """The values (``val_loss``, ``val_<metric>``, ``val_perplexity`` and ``val_bits_per_byte``
    where the data has tokens and text) and the batches, samples and tokens they are over."""
    origin: WeightsOrigin
    """Where the weights came from (kind, checkpoint step), read once: the one evaluated."""
    model_name: str
    """The registered model the weights were built as."""
    asked: int
    """The batches asked for (``batches``, else the data's ``data.eval_batches``, 8 where that is
    0); :attr:`evaluated` holds fewer when the validation data ends sooner."""
    is_global_zero: bool
    """Whether this process reports (always, in one process; under ``strategy``, rank 0 only)."""


def evaluate_run(checkpoint: str | Path, *, device: str | torch.device = "cpu", batches: int | None = None,
                 host: PluginHost | None = None, data: DataChoice | None = None, strategy: str | None = None,
                 dtype: str = "fp32") -> RunEvaluation:
    """Evaluate the model ``checkpoint`` holds on its validation data (at most ``batches``) on
    ``device``, its weights in ``dtype``; with ``strategy`` placed on a launcher's processes by
    that strategy (``tp``, ``pipeline``: :func:`~deepseek.training.inference.load_placed`).
    ``host``: the plugin host its model and dataset resolve on (default: the process's)."""
    from deepseek.training.evaluation import eval_batch_count
    from deepseek.training.inference import evaluate_validation, load_placed, placed_run
    from deepseek.training.weights_source import read_source

    source = read_source(checkpoint)  # read once: the origin reported is the one evaluated
    model, config, _, placer = load_placed(source, device, strategy=strategy, need_data=True, host=host,
                                           command="eval", dtype=dtype, data=data)
    with placed_run(placer):
        done = evaluate_validation(model, config, batches, host, placer, source)
    return RunEvaluation(done, source.origin, config.model.name, eval_batch_count(config, batches),
                         placer is None or placer.is_global_zero)
