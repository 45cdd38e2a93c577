"""``deepseek tokenizer``: train a byte-level BPE tokenizer on a corpus, or inspect a tokenizer.json.

``train`` reads the same corpus as the ``text`` dataset (``--data`` / ``--pattern``, default the
embedded standard-library corpus) and learns from its *training* pieces only, split exactly as
the dataset splits them (``--val-fraction``, the ``data.val_fraction`` of the runs that will use
it), then reports the compression on the validation pieces. Nothing here imports torch; the
Hugging Face ``tokenizers`` library (the ``hf`` extra) is imported when a command runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from deepseek.cli.params import FiniteFloat, count


@click.group("tokenizer")
def tokenizer() -> None:
    """Train or inspect BPE tokenizers (Hugging Face tokenizers; pip install 'deepseek-core[hf]')."""


def _texts(corpus: Any, split: str) -> Iterator[str]:
    for piece in corpus.pieces(split):
        yield piece.read(0, piece.length).decode("utf-8", errors="replace")


@tokenizer.command("train")
@click.option("--data", "data_path", default="", metavar="PATH",
              help="Text file or folder (data.path); default: the embedded corpus.")
@click.option("--pattern", default="", metavar="GLOB", help="Files to read under a --data folder (data.pattern).")
@click.option("--val-fraction", type=FiniteFloat(min=0.0, max=1.0, max_open=True), default=0.05, show_default=True,
              help="Held-out share of files, never trained on (data.val_fraction of the runs).")
@click.option("--vocab-size", type=count(257), default=4096, show_default=True,
              help="Tokens, including 256 bytes and the separator.")
@click.option("--min-frequency", type=count(), default=2, show_default=True,
              help="Pairs seen fewer times are not merged.")
@click.option("--separator", "separator_token", default="<|endoftext|>", show_default=True,
              help="Document-separator special token (id 0).")
@click.option("--out", required=True, metavar="FILE.json", help="Where to write the tokenizer.json.")
def train(data_path: str, pattern: str, val_fraction: float, vocab_size: int, min_frequency: int,
          separator_token: str, out: str) -> None:
    """Train a byte-level BPE tokenizer on the corpus's training split."""
    from deepseek.data.bpe import (
        BPETokenizer,
        file_digest,
        require_tokenizers,
        train_bpe,
        write_tokenizer,
    )
    from deepseek.data.corpus import open_corpus
    from deepseek.paths import created_note, prepare_output

    require_tokenizers("deepseek tokenizer train")
    if not separator_token:
        raise click.BadParameter("must not be empty", param_hint="--separator")
    from deepseek.errors import UsageError

    try:
        corpus = open_corpus(data_path or None, pattern=pattern or None, val_fraction=val_fraction)
    except UsageError as exc:  # the corpus speaks of the config key; here it is the option
        raise UsageError(str(exc).replace("data.path:", "--data:", 1).replace("(data.pattern)", "(--pattern)")) from None
    missing = prepare_output(out, where="--out", folder=False, file_name="tokenizer.json")
    hf = train_bpe(_texts(corpus, "train"), vocab_size=vocab_size, min_frequency=min_frequency,
                   separator_token=separator_token)
    path = write_tokenizer(hf, out)
    tok = BPETokenizer(hf, separator=hf.token_to_id(separator_token), digest=file_digest(path.read_bytes()),
                       source=str(path))
    click.echo(f"wrote {path}{created_note(missing)}: vocabulary {tok.vocab_size}, separator "
               f"{separator_token!r} = id {tok.separator}, trained on {corpus.num_bytes('train'):,} bytes "
               f"of {corpus.name}")
    _report_compression(tok, corpus)


def _report_compression(tok: Any, corpus: Any) -> None:
    """Tokens per byte on the validation split (bytes: 1.0)."""
    n_bytes = corpus.num_bytes("val")
    if not n_bytes:
        click.echo("no validation split (val fraction 0): compression not measured")
        return
    n_tokens = sum(len(tok.encode(text)) for text in _texts(corpus, "val"))
    click.echo(f"validation split: {n_bytes:,} bytes -> {n_tokens:,} tokens "
               f"({n_tokens / n_bytes:.3f} tokens/byte, {n_bytes / max(n_tokens, 1):.2f} bytes/token)")


@tokenizer.command("info")
@click.argument("path", metavar="FILE.json|DIR")
@click.option("--separator", "separator_token", default="<|endoftext|>", show_default=True,
              help="The document-separator token the file must have (data.separator_token); for the "
                   "default, a tokenizer without it uses the eos_token of a tokenizer_config.json beside it.")
@click.option("--text", default=None, metavar="TEXT", help="Also show how TEXT is tokenized.")
def info(path: str, separator_token: str, text: str | None) -> None:
    """Check a local tokenizer.json (or a transformers tokenizer folder) and show its vocabulary and separator."""
    from deepseek.data.bpe import load_bpe

    tok = load_bpe(path, separator_token, where="tokenizer info")
    click.echo(f"{path}: vocabulary {tok.vocab_size}, separator {tok.hf.id_to_token(tok.separator)!r} = id {tok.separator}, "
               f"{tok.identity}")
    if text is not None:
        ids = tok.encode(text)
        click.echo(f"{len(ids)} tokens: {ids}")
