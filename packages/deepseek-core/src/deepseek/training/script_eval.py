"""``deepseek.evaluate``: a script's model scored on held-out torch data in one process, as its
run's evaluations score it (:func:`deepseek.training.script.fit` trains it); or, given only a
``checkpoint``, a registered model's run scored on its own validation data, as ``deepseek eval``
scores it (:func:`deepseek.training.run_eval.evaluate_run`, the command's implementation)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import api_args
from deepseek.errors import UsageError
from deepseek.training.script import DEFAULT_BATCH_SIZE, SCRIPT_NAME

if TYPE_CHECKING:
    from torch import nn

    from deepseek.plugins.host import PluginHost


def evaluate(
    model: nn.Module | None = None,
    data: Any = None,
    *,
    checkpoint: str | Path | None = None,
    batch_size: int | None = None,
    batches: int | None = None,
    names: Sequence[str] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    device: str = "cpu",
    host: PluginHost | None = None,
    dtype: str | None = None,
) -> dict[str, float]:
    """Mean ``val_loss`` and ``val_<metric>`` of ``model`` over ``data`` (a torch dataset of
    held-out samples, read in order, in batches of ``batch_size`` and a last one with the rest,
    each weighed by its rows; ``batches`` caps how many),
    in fp32 on ``device``, in one process. ``checkpoint``: a run folder, checkpoint folder or
    weights file whose model weights are loaded into ``model`` first (what :func:`fit` saved;
    any strategy's layout; a sharded checkpoint's ``sharded.json`` groups checked on ``host``,
    default the process's plugin host). ``batch_size`` and ``batches`` default to the checkpoint's run's
    ``data.batch_size`` and ``data.eval_batches``, so the numbers are its run's evaluation of the
    same ``data``; without a checkpoint (or from a weights file) to 32 and every batch
    (``batches`` of a run without validation, ``data.eval_batches = 0``: every batch).

    Without ``model`` and ``data``: the model of ``checkpoint`` (a run of a registered model, a
    checkpoint folder or exported weights), built from its config on ``host`` (default: the
    process's plugin host), scored on that config's validation data (at most ``batches``, default
    its ``data.eval_batches``, 8 where that is 0): the values ``deepseek eval --checkpoint``
    prints, ``val_perplexity`` and ``val_bits_per_byte`` included where the data has them;
    ``dtype`` the weights' dtype as ``--dtype`` takes it (``fp32``, the default, ``bf16``, ``fp16``)."""
    from torch import nn

    from deepseek.data.torch_data import TorchData
    from deepseek.models.checks import check_batch_keys
    from deepseek.training.checkpoint import load_into_model, read_trainer_state, resolve_checkpoint
    from deepseek.training.evaluation import evaluate_in_process

    if model is None and data is None:
        return _run_values(checkpoint, batches, device, host, dtype, batch_size=batch_size, names=names,
                           collate_fn=collate_fn)
    if model is None or data is None:
        missing, given = ("model", "data") if model is None else ("data", "model")
        raise UsageError(f"{missing}: missing; pass both model and data (your model scored on your held-out data), "
                         f"or neither with checkpoint= (a run's model on its own validation data), not {given} alone")
    if host is not None and checkpoint is None:
        raise UsageError("host: applies with checkpoint= (the plugin host its weights are read on, and without model "
                         "and data its run's registered model is built on); leave it out, or pass checkpoint")
    if dtype is not None:
        raise UsageError("dtype: applies to evaluate(checkpoint=...) without model and data (the dtype the run's model "
                         "is built in); your model is scored in the dtype it has: leave it out, or cast the model")
    if not isinstance(model, nn.Module):
        raise UsageError(f"model: expected the torch.nn.Module to score (an instance: model=Net()), got "
                         f"{type(model).__name__}")
    for name, value in (("batch_size", batch_size), ("batches", batches)):
        _check_count(value, name)
    where, plugins = api_args.device(device, "device"), api_args.host(host)
    if checkpoint is not None:
        path = api_args.path(checkpoint, "checkpoint")
        directory = None if path.is_file() else resolve_checkpoint(path)
        load_into_model(model, path if directory is None else directory, plugins)
        saved = read_trainer_state(directory).get("config") if directory is not None else None
        run_data = saved.get("data") if isinstance(saved, dict) else None
        if isinstance(run_data, dict):
            size, count = run_data.get("batch_size"), run_data.get("eval_batches")
            batch_size = batch_size if batch_size is not None or not isinstance(size, int) else size
            # a run without validation (eval_batches 0) caps nothing: every batch, as without a checkpoint
            batches = batches if batches is not None or not isinstance(count, int) or count < 1 else count
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    model.to(where)
    reader = TorchData(data, batch_size=batch_size, seed=0, val=data, names=names, collate_fn=collate_fn,
                       val_name="data")
    val = reader.validation_batches(batches if batches is not None else 1 << 62)
    check_batch_keys(model, val[0], model_name=SCRIPT_NAME)  # as fit checks them: one line, not forward's TypeError
    from deepseek.training.evaluation import batch_weights
    from deepseek.training.loss_items import item_weights

    items = item_weights(model, f"model {type(model).__name__}")
    return evaluate_in_process(model, val, device=where, model_name=SCRIPT_NAME, weights=batch_weights(val, items))


def _run_values(checkpoint: Any, batches: Any, device: Any, host: Any, dtype: Any,
                **script_only: Any) -> dict[str, float]:
    """:func:`evaluate` of ``checkpoint``'s own model on its own validation data, its arguments
    checked first (one ``UsageError`` naming the keyword)."""
    from deepseek.dtypes import DTYPE_NAMES
    from deepseek.training.run_eval import evaluate_run
    from deepseek.training.weights_source import DataChoice

    if checkpoint is None:
        raise UsageError("checkpoint: missing; pass checkpoint= a run folder to score its model on its own validation "
                         "data, or model and data to score your model on your data")
    for name, value in script_only.items():
        if value is not None:
            raise UsageError(f"{name}: applies to evaluate(model, data, ...) only; a run's own validation data is read "
                             "as the run read it (its data.batch_size): leave it out, or pass model and data")
    _check_count(batches, "batches")
    path, where = api_args.path(checkpoint, "checkpoint"), api_args.device(device, "device")
    cast = "fp32" if dtype is None else api_args.choice(dtype, "dtype", tuple(DTYPE_NAMES))
    other = DataChoice(other_data="deepseek.evaluate(model, data, checkpoint=...) (your model on your torch data)")
    run = evaluate_run(path, device=where, batches=batches, host=api_args.host(host), data=other,
                       dtype=cast)
    return dict(run.evaluated.values)


def _check_count(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"{name}: must be a positive integer, got {value!r}")
