"""``deepseek tokenizer``: train a byte-level BPE tokenizer on a corpus, or inspect a tokenizer.json.

``train`` reads the same corpus as the ``text`` dataset (``--data`` / ``--pattern``, default the
embedded standard-library corpus), or with ``--files`` the same records as the ``hf`` dataset
(JSON lines, Parquet, CSV, text, saved datasets: ``--val-files``, ``--text-field``,
``--format``), and learns from the *training* split only, split exactly as the dataset splits it
(``--val-fraction``, the ``data.val_fraction`` of the runs that will use it), then reports the
compression on the validation split. Nothing here imports torch; the
Hugging Face ``tokenizers`` library (the ``hf`` extra) is imported when a command runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import click

from deepseek.cli.params import PATH, FiniteFloat, count
from deepseek.errors import shown


@click.group("tokenizer")
def tokenizer() -> None:
    """Train or inspect BPE tokenizers (Hugging Face tokenizers; pip install 'deepseek-core[hf]')."""


class _Pieces:
    """The ``text`` dataset's corpus as texts per split (one per piece)."""

    def __init__(self, corpus: Any) -> None:
        self.corpus, self.name = corpus, corpus.name

    def texts(self, split: str) -> Iterator[str]:
        from deepseek.errors import UsageError

        for piece in self.corpus.pieces(split):
            try:
                text = piece.text(strict=self.corpus.strict_text)
            except UsageError as exc:
                raise UsageError(_as_text_options(str(exc))) from None
            yield text


class _Records:
    """The ``hf`` dataset's files as texts per split (one per non-empty record), streamed."""

    def __init__(self, options: Any) -> None:
        from deepseek.data.hf import FileSource
        from deepseek.data.tokenizer import ByteTokenizer

        self.source = FileSource(options, ByteTokenizer())
        train = [unit.path for unit in self.source.units("train")]  # what the tokenizer learns from
        more = ", ..." if len(train) > 1 else ""
        self.name = f"{len(train)} file{'s' if len(train) != 1 else ''} ({train[0]}{more})"

    def texts(self, split: str) -> Iterator[str]:
        reader = self.source.reader()
        for unit in self.source.units(split):
            index = 0
            while (ids := reader.doc(unit, index)) is not None:
                if len(ids):
                    yield ids.tobytes().decode("utf-8")
                index += 1


def _counted(texts: Iterator[str], total: list[int]) -> Iterator[str]:
    """``texts``, adding each one's UTF-8 bytes to ``total[0]``."""
    for text in texts:
        total[0] += len(text.encode("utf-8"))
        yield text


def _hf_options(files: tuple[str, ...], val_files: tuple[str, ...], text_field: str, fmt: str,
                val_fraction: float, reading: dict[str, str]) -> Any:
    """The ``hf`` dataset's options for ``--files`` and its companions (one line when refused)."""
    from deepseek.data.hf import HFOptions
    from deepseek.errors import ConfigError, UsageError

    try:
        return HFOptions(files=files, val_files=val_files, text_field=text_field, format=fmt,  # type: ignore[arg-type]
                         val_fraction=val_fraction, **reading)
    except ConfigError as exc:
        raise UsageError(_as_options(str(exc))) from None


def _as_text_options(message: str) -> str:
    """An error of the ``text`` corpus, whose ``data.path``/``data.pattern`` are this command's
    ``--data``/``--pattern``, and which a tokenizer reads (there are no byte tokens to suggest)."""
    return (message.replace("data.pattern", "--pattern").replace("data.path", "--data")
            .replace("; or train on byte tokens (no data.tokenizer)", ""))


def _as_options(message: str) -> str:
    """An error of the ``hf`` dataset's config keys, naming this command's options instead."""
    for key in ("val_files", "files", "text_field", "format", "csv_delimiter", "json_field"):
        message = message.replace(f"data.{key}", f"--{key.replace('_', '-')}")
    return message


@tokenizer.command("train")
@click.option("--data", "data_path", type=PATH, metavar="PATH",
              help="Text file or folder (data.path); default: the embedded corpus.")
@click.option("--pattern", default="", metavar="GLOB", help="Files to read under a --data folder (data.pattern).")
@click.option("--val-fraction", type=FiniteFloat(min=0.0, max=1.0, max_open=True), default=0.05, show_default=True,
              help="Held-out share of files, never trained on (data.val_fraction of the runs).")
@click.option("--vocab-size", type=count(257, 1 << 24), default=4096, show_default=True,
              help="Tokens, including 256 bytes and the separator (at most 16,777,216: the trainer allocates "
                   "its tables for this many up front, and a larger number aborted the process).")
@click.option("--min-frequency", type=count(), default=2, show_default=True,
              help="Pairs seen fewer times are not merged.")
@click.option("--separator", "separator_token", default="<|endoftext|>", show_default=True,
              help="Document-separator special token (id 0).")
@click.option("--files", multiple=True, metavar="GLOB",
              help="Instead of --data: files of the hf dataset (data.files; JSON lines, Parquet, CSV, text, "
                   "save_to_disk folders); repeat for several.")
@click.option("--val-files", multiple=True, metavar="GLOB", help="With --files: the validation files (data.val_files).")
@click.option("--text-field", default="text", show_default=True, help="With --files: the text column (data.text_field).")
@click.option("--format", "fmt", type=click.Choice(["", "json", "parquet", "csv", "text", "arrow"]), default="",
              help="With --files: the files' format (data.format); default: from each extension.")
@click.option("--csv-delimiter", default=",", show_default=True, metavar="CHAR",
              help="With --files: the CSV files' column separator (data.csv_delimiter).")
@click.option("--json-field", default="", metavar="KEY",
              help="With --files: the key holding the records of JSON files whose top level is an object "
                   "(data.json_field).")
@click.option("--out", required=True, type=PATH, metavar="FILE.json", help="Where to write the tokenizer.json.")
def train(data_path: str | None, pattern: str, val_fraction: float, vocab_size: int, min_frequency: int,
          separator_token: str, files: tuple[str, ...], val_files: tuple[str, ...], text_field: str, fmt: str,
          csv_delimiter: str, json_field: str, out: str) -> None:
    """Train a byte-level BPE tokenizer on the corpus's (or --files') training split."""
    from deepseek.data.bpe import (
        BPETokenizer,
        require_tokenizers,
        tokenizer_bytes,
        train_bpe,
        write_tokenizer,
    )
    from deepseek.data.corpus import open_corpus
    from deepseek.paths import created_note, prepare_output

    require_tokenizers("deepseek tokenizer train")
    if not separator_token:
        raise click.BadParameter("must not be empty", param_hint="--separator")
    from deepseek.errors import UsageError

    if files and (data_path is not None or pattern):
        raise UsageError("--files: give either --files (the hf dataset's files) or --data/--pattern (text files)")
    if not files and (val_files or fmt or text_field != "text" or csv_delimiter != "," or json_field):
        raise UsageError("--val-files/--text-field/--format/--csv-delimiter/--json-field: they go with --files; add "
                         "--files GLOB")
    if files:
        reading = {"csv_delimiter": csv_delimiter, "json_field": json_field}
        corpus: Any = _Records(_hf_options(files, val_files, text_field, fmt, val_fraction, reading))
        has_val = bool(val_files) or val_fraction > 0
    else:
        try:  # the corpus speaks of the config keys; here they are the options
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                text_corpus = open_corpus(data_path, pattern=pattern or None, val_fraction=val_fraction,
                                          utf8=True)
        except UsageError as exc:
            raise UsageError(_as_text_options(str(exc))) from None
        for w in said:
            warnings.warn(_as_text_options(str(w.message)), w.category, stacklevel=1)
        corpus, has_val = _Pieces(text_corpus), text_corpus.num_bytes("val") > 0
    _check_replaceable(out)
    from deepseek.cli.context import command_host

    missing = prepare_output(out, where="--out", folder=False, file_name="tokenizer.json", host=command_host())
    learnt = [0]
    try:
        hf = train_bpe(_counted(corpus.texts("train"), learnt), vocab_size=vocab_size,
                       min_frequency=min_frequency, separator_token=separator_token)
    except UsageError as exc:  # a record the hf dataset refuses (a missing column, a number)
        raise UsageError(_as_options(str(exc))) from None
    if not learnt[0]:
        raise UsageError(f"{'--files' if files else '--data'}: the training split of {corpus.name} holds no text (every "
                         "document is empty); give files with text (nothing was written)")
    path = write_tokenizer(hf, out)
    # the bytes written, not the path read back (something else may be there by now)
    tok = BPETokenizer(hf, separator=hf.token_to_id(separator_token), content=tokenizer_bytes(hf), source=str(path))
    click.echo(f"wrote {shown(path)}{created_note(missing)}: vocabulary {tok.vocab_size}, separator "
               f"{separator_token!r} = id {tok.separator}, trained on {learnt[0]:,} bytes of {shown(corpus.name)}")
    _report_compression(tok, corpus, has_val)


def _check_replaceable(out: str) -> None:
    """An existing ``--out`` is replaced only when it is a tokenizer.json outside a run folder: a
    data file, a config or a run's own copy of its tokenizer (which the run checks against its
    digest) were overwritten without a word."""
    from pathlib import Path

    from deepseek.data.bpe import MAX_TOKENIZER_BYTES
    from deepseek.errors import UsageError
    from deepseek.parsing import loads_json, read_file

    target = Path(out)
    if not target.is_file():
        return  # missing (made), or a folder / device (prepare_output says why)
    if (target.parent / "checkpoints").is_dir() and (target.parent / "config.toml").is_file():
        raise UsageError(f"--out {out}: is the tokenizer of the run in {target.parent} (the run checks it against "
                         "the one it was trained with); give another path")
    try:
        body = loads_json(read_file(target, MAX_TOKENIZER_BYTES))  # nested past the stack: a ValueError too
    except (OSError, ValueError):
        body = None
    if not (isinstance(body, dict) and "model" in body and "added_tokens" in body):
        raise UsageError(f"--out {out}: exists and is not a tokenizer.json (a data file? a config?); give a new file "
                         "path, or remove that file first (nothing was written)")


def _report_compression(tok: Any, corpus: Any, has_val: bool) -> None:
    """Tokens per byte on the validation split (bytes: 1.0)."""
    if not has_val:
        click.echo("no validation split (val fraction 0): compression not measured")
        return
    total = [0]
    n_tokens = sum(len(tok.encode(text)) for text in _counted(corpus.texts("val"), total))
    n_bytes = total[0]
    if not n_bytes:
        click.echo("validation split holds no text: compression not measured")
        return
    click.echo(f"validation split: {n_bytes:,} bytes -> {n_tokens:,} tokens "
               f"({n_tokens / n_bytes:.3f} tokens/byte, {n_bytes / max(n_tokens, 1):.2f} bytes/token)")


@tokenizer.command("info")
@click.argument("path", type=PATH, metavar="FILE.json|DIR")
@click.option("--separator", "separator_token", default="<|endoftext|>", show_default=True,
              help="The document-separator token the file must have (data.separator_token); for the "
                   "default, a tokenizer without it uses the eos_token of a tokenizer_config.json beside it.")
@click.option("--text", default=None, metavar="TEXT", help="Also show how TEXT is tokenized.")
def info(path: str, separator_token: str, text: str | None) -> None:
    """Check a local tokenizer.json (or a transformers tokenizer folder) and show its vocabulary and separator."""
    from deepseek.data.bpe import load_bpe

    tok = load_bpe(path, separator_token, where="tokenizer info")
    click.echo(f"{shown(path)}: vocabulary {tok.vocab_size}, separator {tok.hf.id_to_token(tok.separator)!r} = id {tok.separator}, "
               f"{tok.identity}")
    if text is not None:
        ids = tok.encode(text)
        click.echo(f"{len(ids)} tokens: {ids}")
