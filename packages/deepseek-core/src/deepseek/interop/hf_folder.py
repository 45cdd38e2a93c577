"""Hugging Face model folders on disk: ``deepseek export --format hf`` and ``deepseek import-hf``.

An export folder holds ``config.json`` and ``model.safetensors`` (:mod:`deepseek.interop.gpt2`
maps the names), plus the run's ``tokenizer.json`` and a minimal ``tokenizer_config.json`` when
the run has one. An import folder holds deepseek's exported-weights file ``model.safetensors``
(the ``[model]`` table in its metadata, as ``deepseek eval/generate --checkpoint`` and
``train.init_from`` read it), a ``config.toml`` that trains from it and the source's
``tokenizer.json`` when it has one (with its ``tokenizer_config.json`` / ``special_tokens_map.json``,
whose eos_token is the separator). Either is written into a temporary folder beside the target
and renamed into place, so a refused or failed command leaves nothing; an existing folder that
is not empty is refused. Files read back (config.json, safetensors, tokenizer.json) are checked
like user input: one :class:`UsageError` line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import durable
from deepseek.arguments import spelled
from deepseek.builtins.commands import EXPORT_HF, export_run_file
from deepseek.data.bpe import MAX_TOKENIZER_BYTES, SPECIAL_TOKEN_FILES, declared_eos
from deepseek.dtypes import torch_dtype
from deepseek.errors import UsageError, shown
from deepseek.graph.export_trained import Note, export_home
from deepseek.interop import gpt2
from deepseek.parsing import loads_json, read_text
from deepseek.paths import check_output, make_folders, usual_mode

if TYPE_CHECKING:
    from deepseek.data.bpe import BPETokenizer
    from deepseek.plugins.host import PluginHost
    from deepseek.run_files import OwnRunFile
    from deepseek.training.weights_source import Source

TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
END_OF_TEXT = "<|endoftext|>"
"""GPT-2's one special token (also its unk_token)."""


# ----------------------------------------------------------------------------- shared


def check_target(out: Path, where: str = "--out", *, host: PluginHost | None,
                 replaces: OwnRunFile | None = None, default: bool = False) -> list[Path]:
    """Refuse ``out`` unless it can become a new folder (missing, or an empty folder given as
    ``where``; not a symbolic link, which the rename would replace); return the parents to create
    (:func:`deepseek.paths.check_output`, with the run files the plugins on ``host`` declare;
    ``replaces``: export's own ``hf/``). ``default``: ``out`` is export's default folder, not
    given: one there already (even empty, an earlier export's too) is refused and left as it is:
    an export writes its folder whole and replaces none (a user's ``hf`` folder was replaced)."""
    missing = check_output(out, where=where, folder=True, host=host, replaces=replaces)
    if out.is_symlink():  # the rename would replace the link (an empty folder it names: an internal error)
        raise UsageError(f"{where}: {out} is a symbolic link (to {shown(os.readlink(out))}); give a new folder")
    if default and out.exists():
        raise UsageError(f"{where}: not given, so the folder is {out}, which already exists (an earlier export's, "
                         f"or a folder of yours) and an export replaces no folder; give {where} a new folder, or "
                         f"remove {out}")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{where}: {out} already exists and is not empty; give a new folder (or remove it)")
    return missing


def write_folder(out: Path, missing: list[Path], fill: Callable[[Path], None], where: str = "--out") -> list[Path]:
    """Run ``fill(tmp)`` in a temporary folder beside ``out``, then rename it to ``out``; returns
    the missing parent folders it created, for the command's report (``created_note``)."""
    from deepseek.paths import partial_path, remove_dead_partials

    parents = [p for p in missing if p != out]
    make_folders(parents, where=where)
    remove_dead_partials(out)  # what killed writers of out left beside it
    tmp = partial_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        fill(tmp)
        _usual_modes(tmp)
        if out.is_dir():
            out.rmdir()  # empty (checked); a folder that filled up meanwhile raises here
        durable.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return parents


def _usual_modes(folder: Path) -> None:
    """The modes a plain ``mkdir``/``open`` gives under the umask (``mkdtemp`` makes 0700)."""
    usual_mode(folder, folder=True)
    for f in folder.iterdir():
        usual_mode(f)


def read_tokenizer(path: Path, vocab_size: int, content: bytes | None = None) -> dict[str, Any]:
    """``tokenizer.json`` (``content``: its bytes, already read) checked: a JSON object with a ``model`` whose ids fit ``vocab_size``."""
    try:
        data = loads_json(read_text(path, MAX_TOKENIZER_BYTES) if content is None else content.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable tokenizer.json ({exc}); save it with tokenizers' "
                         "Tokenizer.save") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise UsageError(f"{path}: not a tokenizers tokenizer.json (no 'model' object); save it with "
                         "tokenizers' Tokenizer.save")
    vocab = data["model"].get("vocab")
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab))) if isinstance(vocab, list) else []
    added = data.get("added_tokens") or []
    ids += [t.get("id") for t in added if isinstance(t, dict)]
    ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    if ids and max(ids) >= vocab_size:
        raise UsageError(f"{path}: the tokenizer has token id {max(ids)} but the model's vocab_size is "
                         f"{vocab_size}; use the tokenizer the model was trained with")
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _separator(tok: BPETokenizer, tokenizer: dict[str, Any]) -> tuple[str, int] | None:
    """The document separator ``tok`` (a checkpoint's tokenizer) was trained with (a run's
    ``data.separator_token``, the eos_token declared beside an imported file, else ``<|endoftext|>``)
    as ``(token, id)``, when one of ``tokenizer``'s (its tokenizer.json's) added tokens: the export's bos/eos."""
    content = tok.hf.id_to_token(tok.separator)
    special = any(isinstance(t, dict) and t.get("content") == content and t.get("id") == tok.separator
                  for t in tokenizer.get("added_tokens") or [])
    return (content, tok.separator) if special else None


# ----------------------------------------------------------------------------- export


def run_tokenizer(source: Source) -> BPETokenizer | None:
    """The tokenizer the model of ``source`` (a run folder's or checkpoint folder's checkpoint, or
    an exported ``.safetensors``, as read_source read it) was trained with, as generate and eval
    find it (:func:`~deepseek.training.inference.trained_tokenizer`: the run's copy, else the file
    its ``data.tokenizer`` names, either checked against what the checkpoint records when the
    source was read, and not read again: its ``content`` is what was checked); ``None`` for byte
    tokens. (Looking for the copy alone, a run whose copy was gone was exported as bytes.)"""
    from deepseek.data.bpe import BPETokenizer
    from deepseek.training.inference import trained_tokenizer

    tok = trained_tokenizer(source)
    return tok if isinstance(tok, BPETokenizer) else None


def default_export_folder(checkpoint: Path) -> Path:
    """``hf/`` in the run folder (beside an exported ``.safetensors`` file): :func:`export_home`;
    in a run folder it is ``deepseek export``'s declared folder
    (:data:`deepseek.builtins.commands.EXPORT_HF`), which no other command writes into."""
    return export_home(checkpoint) / "hf"


def export_hf(checkpoint: str, out: Path, dtype: str = "fp32", host: Any = None,
              where: str = "--out", default: bool = False) -> tuple[list[Path], list[Note]]:
    """Write ``checkpoint``'s GPT as a ``GPT2LMHeadModel`` folder ``out``; returns the parent
    folders it created and notes (:class:`~deepseek.graph.export_trained.Note`: about the
    tokenizer). ``where`` names ``out`` in messages (``--out``, or ``out`` from
    Python); ``default``: ``out`` is :func:`default_export_folder`, not given (:func:`check_target`)."""
    import torch  # noqa: F401 - load_trained needs it anyway

    from deepseek.training.checkpoint_io import save_tensors
    from deepseek.training.inference import load_trained
    from deepseek.training.weights_source import read_source

    own = export_run_file(host, EXPORT_HF) if host is not None else None  # a run's hf/: the command's declared folder
    missing = check_target(out, where, host=host, replaces=own, default=default)
    source = read_source(checkpoint)  # read once: the model and the tokenizer bytes it checked
    model, config, _ = load_trained(source, "cpu", host=host)
    options = config.model.options
    problem = gpt2.export_problem(config.model.name, options, model)
    if problem:
        raise UsageError(f"{spelled('export --format hf', 'export(format=' + repr('hf') + ')')}: {problem}")
    tok = run_tokenizer(source)  # its bytes, checked, are what the folder gets: the file is not read again
    separator = _separator(tok, read_tokenizer(Path(tok.source), options.vocab_size, tok.content)) if tok else None
    eos = separator[1] if separator else None
    tensors = gpt2.to_hf_state(model.state_dict(), options, torch_dtype(dtype))
    hf_config = gpt2.hf_config(options, dtype, bos=eos, eos=eos)

    def fill(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        save_tensors(tmp / WEIGHTS_FILE, tensors, {"format": "pt"})
        if tok is not None:
            (tmp / TOKENIZER_FILE).write_bytes(tok.content)
            tok_config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast",
                                          "model_max_length": options.max_seq_len}
            if separator is not None:
                tok_config.update(bos_token=separator[0], eos_token=separator[0])
                if separator[0] == END_OF_TEXT:
                    tok_config["unk_token"] = END_OF_TEXT
            (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")

    created = write_folder(out, missing, fill, where)
    if tok is not None:  # a report line: the folder holds what a Hugging Face user expects
        notes = [Note(f"tokenizer: copied {tok.source} with a tokenizer_config.json; load it with "
                      f"transformers.AutoTokenizer.from_pretrained({str(out)!r})", None)]
    else:  # a warning from Python: the folder lacks the tokenizer a Hugging Face user expects
        notes = [Note("tokenizer: none written; the vocabulary is raw UTF-8 bytes (ids 0..255), so encode text as "
                      "list(text.encode('utf-8')) and decode ids with bytes(ids).decode('utf-8', 'replace')",
                      UserWarning)]
    return created, notes


# ----------------------------------------------------------------------------- import


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
