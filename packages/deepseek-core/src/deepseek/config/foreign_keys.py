"""The names Hugging Face (``TrainingArguments``, a model's ``config.json``) and Lightning
(``Trainer``, its callbacks) give to settings deepseek has under other keys, and the one rule
that points a user typing one of them at deepseek's key.

An unknown key of a config table (``train.learning_rate``, ``model.hidden_size``) is looked up
here, whatever the table it was written in (``optimizer.lr`` too), and the refusal says which key
to set instead; keys of nested tables (``[model.vision]``, ``[[optimizer.groups]]``) are not. The table is also rendered in docs/config.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from deepseek.names import did_you_mean


class ForeignKey(NamedTuple):
    """Where a setting named ``key`` by ``origin`` lives here, with how it differs (``note``)."""

    origin: str
    target: str
    note: str = ""


_HF = "Hugging Face's TrainingArguments"
_HF_DATA = "Hugging Face's examples and TRL"
_HF_MODEL = "a Hugging Face config.json"
_PL = "Lightning's Trainer"
_PL_STOP = "Lightning's EarlyStopping"
_PL_SAVE = "Lightning's ModelCheckpoint"

FOREIGN_KEYS: dict[str, ForeignKey] = {
    "learning_rate": ForeignKey(_HF, "train.lr"),
    "per_device_train_batch_size": ForeignKey(_HF, "data.batch_size",
                                              "the global batch: all ranks and micro-batches together"),
    "per_device_eval_batch_size": ForeignKey(_HF, "data.batch_size", "one batch size for training and evaluation"),
    "gradient_accumulation_steps": ForeignKey(_HF, "train.grad_accum"),
    "accumulate_grad_batches": ForeignKey(_PL, "train.grad_accum"),
    "max_grad_norm": ForeignKey(_HF, "train.grad_clip"),
    "gradient_clip_val": ForeignKey(_PL, "train.grad_clip"),
    "num_train_epochs": ForeignKey(_HF, "train.max_steps", "steps, not epochs; deepseek.fit takes max_epochs"),
    "max_epochs": ForeignKey(_PL, "train.max_steps", "steps, not epochs; deepseek.fit takes max_epochs"),
    "warmup_ratio": ForeignKey(_HF, "train.warmup_steps", "steps, not a share of the run"),
    "weight_decay": ForeignKey(_HF, "optimizer.weight_decay"),
    "adam_beta1": ForeignKey(_HF, "optimizer.betas", "both betas as one list, [0.9, 0.95]"),
    "adam_beta2": ForeignKey(_HF, "optimizer.betas", "both betas as one list, [0.9, 0.95]"),
    "adam_epsilon": ForeignKey(_HF, "optimizer.eps"),
    "optim": ForeignKey(_HF, "optimizer.name"),
    "lr_scheduler_type": ForeignKey(_HF, "lr_schedule.name"),
    "eval_steps": ForeignKey(_HF, "train.eval_interval"),
    "val_check_interval": ForeignKey(_PL, "train.eval_interval", "in steps"),
    "limit_val_batches": ForeignKey(_PL, "data.eval_batches", "a number of batches"),
    "save_steps": ForeignKey(_HF, "checkpoint.interval"),
    "every_n_train_steps": ForeignKey(_PL_SAVE, "checkpoint.interval"),
    "save_total_limit": ForeignKey(_HF, "checkpoint.keep_last"),
    "metric_for_best_model": ForeignKey(_HF, "train.monitor"),
    "greater_is_better": ForeignKey(_HF, "train.monitor_mode", '"max" for true, "min" for false'),
    "early_stopping_patience": ForeignKey(_HF, "train.early_stop_patience"),
    "early_stopping_threshold": ForeignKey(_HF, "train.early_stop_min_delta"),
    "patience": ForeignKey(_PL_STOP, "train.early_stop_patience"),
    "min_delta": ForeignKey(_PL_STOP, "train.early_stop_min_delta"),
    "output_dir": ForeignKey(_HF, "logging.runs_dir", "or --run-dir for the run folder itself"),
    "default_root_dir": ForeignKey(_PL, "logging.runs_dir", "or --run-dir for the run folder itself"),
    "run_name": ForeignKey(_HF, "logging.name"),
    "report_to": ForeignKey(_HF, "logging.trackers"),
    "log_every_n_steps": ForeignKey(_PL, "logging.every_n_steps"),
    "gradient_checkpointing": ForeignKey(_HF, "train.activation_checkpointing"),
    "torch_compile": ForeignKey(_HF, "train.compile"),
    "bf16": ForeignKey(_HF, "precision.dtype", '= "bf16", or --precision bf16'),
    "fp16": ForeignKey(_HF, "precision.dtype", '= "fp16", or --precision fp16'),
    "precision": ForeignKey(_PL, "precision.dtype", "or --precision"),
    "accelerator": ForeignKey(_PL, "strategy.device"),
    "devices": ForeignKey(_PL, "strategy.device", "one device; several processes: deepseek launch -n N"),
    "block_size": ForeignKey(_HF_DATA, "data.seq_len"),
    "max_seq_length": ForeignKey(_HF_DATA, "data.seq_len"),
    "max_length": ForeignKey(_HF_DATA, "data.seq_len"),
    "dataset_text_field": ForeignKey(_HF_DATA, "data.text_field"),
    "hidden_size": ForeignKey(_HF_MODEL, "model.d_model"),
    "n_embd": ForeignKey(_HF_MODEL, "model.d_model"),
    "num_attention_heads": ForeignKey(_HF_MODEL, "model.n_heads"),
    "num_hidden_layers": ForeignKey(_HF_MODEL, "model.n_layers"),
    "intermediate_size": ForeignKey(_HF_MODEL, "model.d_ff"),
    "n_inner": ForeignKey(_HF_MODEL, "model.d_ff"),
    "n_positions": ForeignKey(_HF_MODEL, "model.max_seq_len"),
    "max_position_embeddings": ForeignKey(_HF_MODEL, "model.max_seq_len"),
    "layer_norm_epsilon": ForeignKey(_HF_MODEL, "model.norm_eps"),
    "tie_word_embeddings": ForeignKey(_HF_MODEL, "model.tie_embeddings"),
    "resid_pdrop": ForeignKey(_HF_MODEL, "model.dropout", "one dropout for embeddings, attention and MLP"),
    # deepseek's own keys written in another table (torch puts lr beside the optimizer's settings)
    "lr": ForeignKey("deepseek", "train.lr"),
    "batch_size": ForeignKey("deepseek", "data.batch_size"),
    "seq_len": ForeignKey("deepseek", "data.seq_len"),
    "max_steps": ForeignKey("deepseek", "train.max_steps"),
    "warmup_steps": ForeignKey("deepseek", "train.warmup_steps"),
    "seed": ForeignKey("deepseek", "train.seed"),
}


def unknown_key_hint(path: str, key: str, names: Iterable[str]) -> str:
    """What an unknown key ``key`` of the config table ``path`` (keys ``names``) is refused with:
    `` (learning_rate of Hugging Face's TrainingArguments is train.lr here)`` when the table above
    knows it (unless it sends the key to a key of this very table that ``names`` lacks: another
    model than the GPT), else :func:`~deepseek.names.did_you_mean`'s suggestion among ``names``,
    or ``""``."""
    from deepseek.config.schema import Config  # late: the schema's checks import the validator

    names = [str(n) for n in names]
    entry = FOREIGN_KEYS.get(str(key))
    section, _, target_key = entry.target.partition(".") if entry else ("", "", "")
    if entry is None or path not in Config.__dataclass_fields__ or (section == path and target_key not in names):
        return did_you_mean(key, names)  # a plugin's model without d_model is not sent to model.d_model
    origin = "" if entry.origin == "deepseek" else f" of {entry.origin}"
    return f" ({key}{origin} is {entry.target} here{'; ' + entry.note if entry.note else ''})"


def unknown_keys(path: str, keys: Sequence[object], names: Iterable[str]) -> str:
    """The head of the one line refusing the unknown keys ``keys`` of the config table ``path``
    (its keys ``names``), every one of them at once, each with :func:`unknown_key_hint`'s hint:
    ``train.lrr: unknown key (did you mean 'lr'?)`` for one, ``model.vision: unknown keys img_sz
    (did you mean 'img_size'?), depthz (did you mean 'depth'?)`` for several, so a user who
    swapped a component learns every key to drop in one run. The caller adds what follows
    (``; allowed keys: ...``)."""
    names = [str(n) for n in names]
    if len(keys) == 1:
        return f"{path}.{keys[0]}: unknown key{unknown_key_hint(path, keys[0], names)}"
    return f"{path}: unknown keys " + ", ".join(f"{key}{unknown_key_hint(path, key, names)}" for key in keys)


def markdown_rows() -> list[str]:
    """The table for docs/config.md: each foreign name, where it comes from, deepseek's key."""
    rows = ["| name | from | deepseek's key |", "|---|---|---|"]
    for key, entry in FOREIGN_KEYS.items():
        if entry.origin != "deepseek":
            rows.append(f"| `{key}` | {entry.origin} | `{entry.target}`{'; ' + entry.note if entry.note else ''} |")
    return rows
