"""``[model] pretrained``: a multimodal classifier's modalities start from unimodal runs.

``pretrained = {vision = "runs/v", audio = "runs/a"}`` names, per modality, a run folder or
checkpoint folder of a *unimodal* ``multimodal.classifier`` (``modalities = [that one]``, the
same encoder and encoder keys). Its weights of that modality, the encoder
(``encoders.<m>.*``), the projection to the shared space (``fusion.project.<m>.*``) and the
modality's own classifier (``fusion.heads.<m>.*``), are copied into the model when it is built;
the fusion's own parts (the MLP, the joint table, cross-attention) start as they would anyway.
With ``freeze_pretrained`` the copied parameters do not train (they are left out of the
optimizer), so the modality's classifier reads exactly as the unimodal model did.

Every problem is one line naming ``model.pretrained.<m>``: no such folder, an incomplete
checkpoint, a run of another model or of other modalities, other encoder keys, shapes that do not
fit. The folders must exist whenever the model is built from its config (training, resume,
evaluation), like ``vision.weights``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from deepseek.config.toml_files import holds_in_toml, toml_value
from deepseek.errors import ConfigError, UsageError


def modality_prefixes(m: str) -> tuple[str, ...]:
    """The state-dict prefixes of modality ``m``'s own parts (encoder, projection, classifier)."""
    return (f"encoders.{m}.", f"fusion.project.{m}.", f"fusion.heads.{m}.")


def _source_model(path: str, where: str) -> tuple[Any, dict[str, Any]]:
    """(checkpoint folder, its run's ``[model]`` table) of ``path``, checked."""
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint

    try:
        ckpt = resolve_checkpoint(path)
        state = read_trainer_state(ckpt)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    model = (state.get("config") or {}).get("model")
    if not isinstance(model, dict):
        raise ConfigError(f"{where}: {ckpt} records no [model] config; give a run folder of deepseek train")
    return ckpt, model


def check_source(m: str, path: str, options: Any) -> tuple[Any, str]:
    """The checkpoint folder of ``pretrained.<m>``; a one-line :class:`ConfigError` when it is not
    a unimodal ``multimodal.classifier`` run of modality ``m`` with the same encoder and keys."""
    where = f"model.pretrained.{m}"
    ckpt, model = _source_model(path, where)
    name = model.get("name")
    if name != "multimodal.classifier":
        raise ConfigError(f"{where}: {path} is a run of model {name!r}; give a unimodal multimodal.classifier run "
                          f"(modalities = [\"{m}\"])")
    modalities = model.get("modalities")
    if modalities != [m]:
        raise ConfigError(f"{where}: {path} is a run of modalities {modalities}; give a run of modalities = [\"{m}\"]")
    encoder = getattr(options, f"{m}_encoder")
    theirs = model.get(f"{m}_encoder", encoder)
    if not isinstance(theirs, str) or not theirs:  # read from the run's files: held like a config's value
        raise ConfigError(f"{where}: {path} records model.{m}_encoder = {theirs!r:.60}, not an encoder name; "
                          "give a run folder of deepseek train")
    if theirs != encoder:
        raise ConfigError(f"{where}: {path} used encoder {theirs!r}, this model {encoder!r}; give a run of the same "
                          f"encoder or set model.{m}_encoder = {toml_value(theirs)}")
    mine = dict(getattr(options, m))
    their_keys = model.get(m)
    if their_keys != mine:
        if not isinstance(their_keys, dict):
            raise ConfigError(f"{where}: {path} used encoder keys {their_keys}, this model {mine}; give a run with "
                              f"the same [model.{m}] keys")
        key = min(k for k in {*mine, *their_keys} if (k in mine, mine.get(k)) != (k in their_keys, their_keys.get(k)))
        theirs_v, mine_v = (_shown(t[key]) if key in t else "not set" for t in (their_keys, mine))
        raise ConfigError(f"{where}: {path} used model.{m}.{key} = {theirs_v}, this model {mine_v}; give a run with "
                          f"the same [model.{m}] keys")
    return ckpt, where


def _shown(value: Any) -> str:
    """A key's value as the refusal writes it after ``model.<m>.<key> =``: TOML, as the config
    holds it (``"rgb"``, ``[2, 2]``); a value of the run's files no config holds as Python writes it."""
    return toml_value(value) if holds_in_toml(value) else repr(value)


def stored_shapes(ckpt: Any) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the model weights in checkpoint folder ``ckpt`` (either layout), read
    from the files' headers only: no tensor data is read."""
    from deepseek.errors import CheckpointError
    from deepseek.training.checkpoint_dirs import MODEL_FILE
    from deepseek.training.checkpoint_sharded import MODEL_DIR, layout_of

    if layout_of(ckpt) == "sharded":
        from torch.distributed.checkpoint import HuggingFaceStorageReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        try:
            meta = HuggingFaceStorageReader(str(ckpt / MODEL_DIR)).read_metadata()
        except Exception as exc:  # noqa: BLE001 - any reader failure is a damaged checkpoint
            raise CheckpointError(f"{ckpt / MODEL_DIR}: sharded weights are unreadable ({exc})") from exc
        return {k: tuple(md.size) for k, md in meta.state_dict_metadata.items()
                if isinstance(md, TensorStorageMetadata)}
    return file_shapes(ckpt / MODEL_FILE)


def file_shapes(path: Any) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the tensors in safetensors file ``path``, from its header only; a
    :class:`CheckpointError` when it is not a readable safetensors file."""
    from deepseek.errors import CheckpointError
    from deepseek.parsing import UnreadableFile
    from deepseek.paths import not_a_file
    from deepseek.safetensors_file import open_safetensors

    try:  # opened once: a FIFO put in place of the file checked is refused, never waited on
        with open_safetensors(path) as fh:
            return {k: fh.shape(k) for k in fh.keys()}
    except (IsADirectoryError, UnreadableFile, FileNotFoundError):
        there = not_a_file(path) or "does not exist"
        raise CheckpointError(f"{path}: {there}, not a safetensors file of model weights") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def load_pretrained(model: nn.Module, sources: Mapping[str, str], options: Any, *, freeze: bool,
                    host: Any = None) -> None:
    """Copy each named run's modality into ``model`` (module docstring); with ``freeze`` the copied
    parameters stop requiring gradients. Each run's config and weight shapes are checked first
    (from ``trainer.json`` and the weight files' headers); a model built on the meta device (a
    tuning study's check of its search space) is only checked: no weights are read. ``host``: the
    plugin host the model is built on, where a sharded run's ``sharded.json`` groups are held to
    its optimizer (default: the process's)."""
    import torch

    from deepseek.training.checkpoint import check_model_fit, load_model_state

    own = model.state_dict()
    for m, path in sources.items():
        ckpt, where = check_source(m, path, options)
        try:
            shapes = stored_shapes(ckpt)
        except UsageError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        prefixes = modality_prefixes(m)
        wanted = {k for k in own if k.startswith(prefixes)}
        given = {k for k in shapes if k.startswith(prefixes)}
        missing = sorted(wanted - given)
        bad = sorted(k for k in wanted & given if shapes[k] != tuple(own[k].shape))
        if missing or bad or given - wanted:
            detail = f"missing {missing[:2]}" if missing else (
                f"shape {shapes[bad[0]]} of {bad[0]} where this model has {tuple(own[bad[0]].shape)}"
                if bad else f"unexpected {sorted(given - wanted)[:2]}")
            raise ConfigError(f"{where}: {path} does not fit this model ({detail}); give a run with the same "
                              f"encoder keys and fusion_options.d_model")
        if any(own[k].is_meta for k in wanted):  # built to be checked: nothing to copy into
            continue
        try:
            theirs = load_model_state(ckpt, host)
            # integers copied into float parameters would be truncated values, read without a word
            check_model_fit({k: theirs[k] for k in wanted}, {k: tuple(own[k].shape) for k in wanted}, ckpt,
                            {k: own[k].dtype for k in wanted})
        except UsageError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        with torch.no_grad():
            for k in wanted:
                own[k].copy_(theirs[k])
    if freeze:
        for name, p in model.named_parameters():
            if any(name.startswith(modality_prefixes(m)) for m in sources):
                p.requires_grad_(False)
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError("model.freeze_pretrained: every parameter of this model comes from model.pretrained, "
                              "so nothing would train; set freeze_pretrained = false or use a fusion with parts of "
                              "its own (concat, cross_attention)")
