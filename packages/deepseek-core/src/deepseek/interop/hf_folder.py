"""Hugging Face model folders on disk: ``deepseek export --format hf``, and what
``deepseek import-hf`` (:mod:`deepseek.interop.hf_import`) shares with it.

An export folder holds ``config.json`` and ``model.safetensors`` (:mod:`deepseek.interop.gpt2`
maps the names), plus the run's ``tokenizer.json`` and a minimal ``tokenizer_config.json`` when
the run has one. Either command's folder is written into a temporary folder beside the target
and renamed into place (:func:`write_folder`), so a refused or failed command leaves nothing; an
existing folder that is not empty is refused (:func:`check_target`). Files read back
(tokenizer.json) are checked like user input: one :class:`UsageError` line naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import durable
from deepseek.arguments import spelled
from deepseek.builtins.commands import EXPORT_HF, export_run_file
from deepseek.data.bpe import MAX_TOKENIZER_BYTES
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
