"""Hugging Face GPT-2 folders read into deepseek: ``deepseek import-hf`` and ``train.init_from``
pointing at a folder ``save_pretrained`` wrote.

``import_hf`` writes deepseek's exported-weights file ``model.safetensors`` (the ``[model]`` table
in its metadata, as ``deepseek eval/generate --checkpoint`` and ``train.init_from`` read it), a
``config.toml`` that trains from it and the source's ``tokenizer.json`` when it has one (with its
``tokenizer_config.json`` / ``special_tokens_map.json``, whose eos_token is the separator), through
:func:`~deepseek.interop.hf_folder.write_folder`, so a refused or failed command leaves nothing.
Every file read (config.json, safetensors shards and their index, tokenizer.json) is checked like
user input: one :class:`UsageError` line naming the file. :mod:`deepseek.interop.gpt2` maps the
names.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.data.bpe import SPECIAL_TOKEN_FILES, declared_eos
from deepseek.errors import UsageError, shown
from deepseek.interop import gpt2
from deepseek.interop.hf_folder import (
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    _is_int,
    check_target,
    read_tokenizer,
    write_folder,
)
from deepseek.parsing import loads_json, read_text

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost


def _present(path: Path) -> bool:
    """Whether a file save_pretrained writes is there; something else under its name (a folder, a
    device) is one line, not taken for a missing file (a tokenizer.json folder was imported as
    byte tokens)."""
    if path.is_file():
        return True
    if path.exists():
        raise UsageError(f"import-hf: {path} is not a regular file (a folder, device, FIFO or socket); give the file "
                         "save_pretrained writes there, or remove it")
    return False


def _source_files(src: Path) -> tuple[Path, list[Path]]:
    """``config.json`` and the safetensors files of a GPT-2 folder, or one line saying what is wrong."""
    if not src.exists():
        from deepseek.paths import broken_link

        raise UsageError(f"import-hf: {src} {broken_link(src) or 'does not exist'}; give a folder written by "
                         "save_pretrained")
    if not src.is_dir():
        raise UsageError(f"import-hf: {src} is a file; give the folder that holds config.json and model.safetensors")
    config = src / "config.json"
    if not _present(config):
        raise UsageError(f"import-hf: {src} has no config.json; give a folder written by save_pretrained")
    single, index = src / WEIGHTS_FILE, src / f"{WEIGHTS_FILE}.index.json"
    if _present(single):
        return config, [single]
    if _present(index):
        try:
            weight_map = loads_json(read_text(index))["weight_map"]
            files = sorted({src / str(name) for name in weight_map.values()})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{index}: not a readable safetensors index ({exc!r}); save the model again") from None
        absent = [f for f in files if not f.is_file() or f.parent != src]
        if absent:
            raise UsageError(f"{index}: names {absent[0].name}, which is not in {src}; copy every shard")
        return config, files
    pickled = [n for n in ("pytorch_model.bin", "pytorch_model.bin.index.json") if (src / n).is_file()]
    if pickled:
        raise UsageError(f"import-hf: {src} has {pickled[0]} (a pickle, which can run code when loaded) and no "
                         "model.safetensors; re-save it with safetensors: GPT2LMHeadModel.from_pretrained(PATH)"
                         ".save_pretrained(NEW, safe_serialization=True)")
    raise UsageError(f"import-hf: {src} has no model.safetensors; save the model with save_pretrained")


def _read_tensors(files: list[Path]) -> dict[str, Any]:
    from deepseek.parsing import UnreadableFile
    from deepseek.paths import not_a_file
    from deepseek.safetensors_file import open_safetensors
    tensors: dict[str, Any] = {}
    checked: set[str] = set()
    for path in files:
        try:  # opened once: a FIFO put in place of the file checked is refused, never waited on
            with open_safetensors(path) as fh:
                for key in fh.keys():
                    if key in tensors:
                        raise UsageError(f"{path}: tensor {key} is also in another shard; save the model again")
                    tensors[key] = fh.get_tensor(key)
        except (IsADirectoryError, UnreadableFile, FileNotFoundError):
            there = not_a_file(path) or "does not exist"
            raise UsageError(f"{path}: {there}, not a safetensors file; save the model again") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"{path}: not a readable safetensors file ({exc}); save the model again") from None
        _check_finite(path, {k: tensors[k] for k in tensors if k not in checked})
        checked.update(tensors)
    return tensors


def _check_finite(path: Path, tensors: dict[str, Any]) -> None:
    """A NaN or infinity in weights read from another library: one line naming the file and the
    tensor (every command refused the imported run afterwards, advising an earlier checkpoint)."""
    from deepseek.training.checkpoint_io import first_nonfinite

    found = first_nonfinite(tensors)
    if found is not None:
        raise UsageError(f"{path}: {found}; these weights cannot be used: save the model again from a healthy copy")


def _data_has_tokenizer() -> bool:
    """Whether the ``text`` dataset has a ``tokenizer`` key (``[data] tokenizer``)."""
    from deepseek.data.text import TextOptions

    return any(f.name == "tokenizer" for f in dataclasses.fields(TextOptions))


def train_config(options: Any, weights: Path, tokenizer: Path | None, source: Path,
                 separator: str | None = None) -> str:
    """``config.toml`` text: ``[model] name = "gpt"`` of ``options``, ``train.init_from = weights``,
    and ``data.tokenizer`` (with the ``separator`` token between documents) when given."""
    import tomli_w

    data: dict[str, Any] = {"seq_len": min(128, options.max_seq_len)}
    if tokenizer is not None:
        data["tokenizer"] = str(tokenizer)
        if separator is not None:
            data["separator_token"] = separator
    table = {"model": {"name": "gpt", **options.to_dict()}, "data": data, "train": {"init_from": str(weights)}}
    head = (f"# Written by `deepseek import-hf {source}`: its GPT-2 as deepseek's GPT.\n"
            f"# Train from it: deepseek train {weights.parent / 'config.toml'}\n\n")
    return head + tomli_w.dumps(table)


def read_gpt2(src: Path) -> tuple[dict[str, Any], Any, dict[str, Any], list[str]]:
    """A GPT-2 folder read and checked: its config.json, the GPT's options and fp32 state dict,
    and notes on what was simplified."""
    config_path, files = _source_files(src)
    try:
        raw = loads_json(read_text(config_path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{config_path}: not valid JSON ({exc}); save the model again") from None
    options, notes = gpt2.gpt_options(raw, config_path)
    where = files[0] if len(files) == 1 else src / f"{WEIGHTS_FILE}.index.json"
    return raw, options, gpt2.from_hf_state(_read_tensors(files), options, where), notes


def is_gpt2_folder(path: Path) -> bool:
    """Whether ``path`` is a folder whose ``config.json`` says ``model_type = "gpt2"``. A
    ``config.json`` there that cannot be read as JSON (also a FIFO, which blocked the read for good,
    or a file over 16 MiB) is one line naming it: the folder is one save_pretrained wrote, damaged."""
    config = path / "config.json"
    if not path.is_dir() or not (config.exists() or config.is_symlink()):
        return False
    try:
        data = loads_json(read_text(config))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise UsageError(f"{config}: cannot be read as JSON ({reason}); give a folder written by save_pretrained, "
                         "or remove the file") from None
    return isinstance(data, dict) and data.get("model_type") == "gpt2"


def load_gpt2_into(model: Any, src: Path, where: str = "train.init_from") -> None:
    """Copy the GPT-2 folder ``src``'s weights into ``model``, a GPT of the same shape; anything
    else is one line naming the differing ``model.<key>``."""
    from deepseek.models.gpt import GPT

    _, options, state, _ = read_gpt2(src)
    if type(model) is not GPT:
        raise UsageError(f"{where}: {src} is a GPT-2, which loads into a GPT only, not a {type(model).__name__}")
    for key in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "head_dim", "max_seq_len", "bias",
                "tie_embeddings"):
        theirs, ours = getattr(options, key), getattr(model.config, key)
        if theirs != ours:
            raise UsageError(f"{where}: {src} has {key} = {theirs} but model.{key} = {ours}; set model.{key} = "
                             f"{theirs} (or write the config with deepseek import-hf {src} --out DIR)")
    model.load_state_dict(state, strict=True)


def import_hf(src: Path, out: Path, *, host: PluginHost) -> tuple[list[Path], list[str]]:
    """Import the GPT-2 folder ``src`` into ``out``; returns the parent folders it created and
    notes for the report. ``host``: the command's, whose plugins' run files ``out`` may not take."""
    from deepseek.training.checkpoint import save_model_state

    missing = check_target(out, host=host)
    raw, options, state, notes = read_gpt2(src)
    tok_src = src / TOKENIZER_FILE
    has_tok = _present(tok_src)
    separator = None
    if has_tok:
        tokenizer = read_tokenizer(tok_src, options.vocab_size)
        declared_eos(tok_src)  # the special-token files copied with it are read back by every run
        eos = raw.get("eos_token_id")
        separator = next((t["content"] for t in tokenizer.get("added_tokens") or []
                          if isinstance(t, dict) and t.get("id") == eos and isinstance(t.get("content"), str)
                          and _is_int(eos)), None)
    final = out.resolve()
    set_tokenizer = has_tok and _data_has_tokenizer()
    text = train_config(options, final / WEIGHTS_FILE, final / TOKENIZER_FILE if set_tokenizer else None, src,
                        separator)
    meta = {"format": "deepseek-weights", "model": json.dumps({"name": "gpt", **options.to_dict()}),
            "step": "0", "source": str(src.resolve())}

    def fill(tmp: Path) -> None:
        save_model_state(tmp / WEIGHTS_FILE, state, meta)
        (tmp / "config.toml").write_text(text, encoding="utf-8")
        if has_tok:
            shutil.copyfile(tok_src, tmp / TOKENIZER_FILE)
            for name in SPECIAL_TOKEN_FILES:
                if (src / name).is_file():
                    shutil.copyfile(src / name, tmp / name)

    created = write_folder(out, missing, fill)
    if has_tok and not set_tokenizer:
        notes.append("copied tokenizer.json, but this deepseek's text dataset has no tokenizer option: "
                     "config.toml trains on byte tokens")
    elif not has_tok:
        notes.append(f"{shown(src)} has no tokenizer.json: config.toml trains on byte tokens (ids 0..255)")
    return created, notes
