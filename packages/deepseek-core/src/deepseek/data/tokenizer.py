"""Tokenizers: the contract (:class:`Tokenizer`), byte tokens, and opening a ``data.tokenizer``.

A tokenizer turns text into token ids and back, and names the id placed between documents in
packed streams (:attr:`Tokenizer.separator`). Two kinds exist:

- :class:`ByteTokenizer`: a token is one byte of the UTF-8 encoding (vocabulary 256, separator
  byte ``0``); the default, needing nothing beyond core.
- :class:`deepseek.data.bpe.BPETokenizer`: a Hugging Face ``tokenizers`` file
  (``tokenizer.json``), trained with ``deepseek tokenizer train`` or brought along; it needs the
  ``hf`` extra (``pip install 'deepseek-core[hf]'``).

:func:`open_tokenizer` is the one way a ``data.tokenizer`` setting becomes a tokenizer. Nothing
here imports torch or the extras.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SEPARATOR = 0
"""Byte placed between documents in packed streams (NUL never occurs in text files)."""
SEPARATOR_TOKEN = "<|endoftext|>"
"""The document-separator token of a BPE tokenizer (id 0 in the ones deepseek trains)."""
TOKENIZER_FILE = "tokenizer.json"
"""Name of the tokenizer's copy in a run folder."""


class Tokenizer:
    """What the data pipeline and ``deepseek generate`` need of a tokenizer."""

    vocab_size: int = 0
    """Token ids ``0 .. vocab_size - 1``."""
    separator: int = 0
    """Id placed between documents."""
    identity: str = ""
    """What identifies this tokenizer in a saved data position (``"bytes"``, ``"bpe:<hash>"``)."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int] | Any) -> str:
        """Text of token ids (a list or a 1-D tensor/array)."""
        raise NotImplementedError

    def prompt_ids(self, text: str) -> list[int]:
        """The ids a generation continues: ``text``'s, or for an empty prompt the separator alone,
        the token every training document follows, so the model starts a new document (as Hugging
        Face models start from their BOS/EOS token)."""
        return self.encode(text) or [self.separator]

    def decode_generated(self, ids: Iterable[int] | Any) -> str:
        """Text of generated ids up to the first separator, the end of the document the model
        wrote (as Hugging Face's ``generate`` stops at the EOS token); the separator is not shown."""
        ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
        return self.decode(ids[:ids.index(self.separator)] if self.separator in ids else ids)

    def decode_continuation(self, prompt_ids: Iterable[int] | Any, ids: Iterable[int] | Any) -> str:
        """The text generated ids add after the prompt's (as :meth:`decode_generated`, up to the
        first separator): the prompt and the continuation decoded as one sequence, less the
        prompt's own text. A tokenizer whose decoder joins tokens with spaces (WordPiece,
        Metaspace) puts the space between prompt and continuation only so; decoded apart, "the
        cat" + "the" read "the catthe"."""
        prompt = list(prompt_ids.tolist() if hasattr(prompt_ids, "tolist") else prompt_ids)
        ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
        ids = ids[:ids.index(self.separator)] if self.separator in ids else ids
        head, whole = self.decode(prompt), self.decode(prompt + ids)
        return whole[len(head):] if whole.startswith(head) else self.decode(ids)

    def token_bytes(self) -> tuple[int, ...] | None:
        """How many UTF-8 bytes of text each token id stands for (index: the id), for validation
        bits per byte; ``None`` (the default) when that is not fixed per token (a tokenizer that
        normalizes text or adds a prefix space) or unknown. The separator counts **1 byte**: the
        one byte ``0`` that separates documents of byte tokens, so both kinds of tokens divide
        the same text by the same number of bytes."""
        return None


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as tokens. ``decode`` replaces invalid sequences (a sampled model may emit
    half a multi-byte character) with U+FFFD instead of failing."""

    vocab_size = 256
    separator = SEPARATOR
    identity = "bytes"

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: its UTF-8 bytes."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int] | Any) -> str:
        """Text of token ids (a list, bytes, or a 1-D tensor/array); invalid UTF-8 becomes U+FFFD."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        try:
            data = bytes(ids)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"ByteTokenizer.decode: token ids must be integers in 0..255 ({exc})") from exc
        return data.decode("utf-8", errors="replace")

    def token_bytes(self) -> tuple[int, ...]:
        """Every token is one byte (the separator, byte ``0``, too)."""
        return (1,) * 256

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"


def open_tokenizer(path: str, separator_token: str = SEPARATOR_TOKEN, *, where: str = "data.tokenizer",
                   content: bytes | None = None) -> Tokenizer:
    """The tokenizer of a ``data.tokenizer`` setting: empty -> bytes; else the ``tokenizer.json``
    at ``path``, validated (one-line :class:`~deepseek.errors.UsageError` naming ``where``);
    ``content``: its bytes, already read and checked (:func:`check_run_tokenizer`), parsed as they are."""
    if not path:
        return ByteTokenizer()
    from deepseek.data.bpe import load_bpe

    return load_bpe(path, separator_token, where=where, content=content)


def with_run_tokenizer(config_data: Mapping[str, Any], run_dir: Path, trainer_state: Any = None, *,
                       check_setting: bool = True) -> dict[str, Any]:
    """A run's saved config data with ``data.tokenizer`` pointing at the run folder's copy
    (``RUN/tokenizer.json``) when the run has one: eval, generate and resume then work after the
    original file moved. ``trainer_state``: the checkpoint's ``trainer.json``, whose data position
    records the tokenizer's identity (``bpe:<hash of the file>``); a copy whose content hashes
    otherwise (replaced or edited since) is refused with one line (CheckpointError), since every
    token id would mean something else. Without the copy the setting's own file is used, and is
    checked the same way (:func:`check_setting_tokenizer`) unless ``check_setting`` is false (a
    resume, where ``--set data.tokenizer`` may still replace it and the result is checked)."""
    return checked_run_tokenizer(config_data, run_dir, trainer_state, check_setting=check_setting)[0]


def checked_run_tokenizer(config_data: Mapping[str, Any], run_dir: Path, trainer_state: Any = None, *,
                          check_setting: bool = True) -> tuple[dict[str, Any], bytes | None]:
    """:func:`with_run_tokenizer`, and the bytes of the file its ``data.tokenizer`` names, as read
    for the check (``None`` where nothing was checked): a caller loading the tokenizer parses them
    (:func:`open_tokenizer`'s ``content``) rather than read the file again, replaced meanwhile."""
    out, content = dict(config_data), None
    table = out.get("data")
    copy = Path(run_dir) / TOKENIZER_FILE
    setting = table.get("tokenizer") if isinstance(table, Mapping) else None
    if isinstance(table, Mapping) and setting and copy.is_file():
        content = check_run_tokenizer(copy, trainer_state)
        out["data"] = {**table, "tokenizer": str(copy)}
    elif isinstance(setting, str) and setting and check_setting:
        content = check_setting_tokenizer(setting, copy, trainer_state)
    return out, content


def recorded_tokenizer(trainer_state: Any) -> str | None:
    """The tokenizer a checkpoint's ``trainer.json`` (``trainer_state``) records in its data
    position (``bpe:<digest>``, ``bytes``), or ``None`` (an older checkpoint, or nothing readable)."""
    data = trainer_state.get("data") if isinstance(trainer_state, Mapping) else None
    recorded = data.get("tokenizer") if isinstance(data, Mapping) else None
    return recorded if isinstance(recorded, str) and recorded else None


def tokenizer_identity(path: Path) -> str:
    """How a checkpoint records the tokenizer file ``path`` (``bpe:<digest of its bytes>``);
    OSError when it cannot be read (also a FIFO or an oversized file: :func:`deepseek.parsing.read_file`)."""
    return _identity(_tokenizer_bytes(path))


def _tokenizer_bytes(path: Path) -> bytes:
    from deepseek.data.bpe import MAX_TOKENIZER_BYTES
    from deepseek.parsing import read_file

    return read_file(path, MAX_TOKENIZER_BYTES)


def _identity(content: bytes) -> str:
    from deepseek.data.bpe import file_digest

    return f"bpe:{file_digest(content)}"


def check_run_tokenizer(copy: Path, trainer_state: Any) -> bytes | None:
    """Refuse the run folder's ``tokenizer.json`` ``copy`` when its content is not the tokenizer
    ``trainer_state`` (a checkpoint's ``trainer.json``) records in its data position; else the
    bytes checked (``None``: nothing recorded to check), which a caller loading the tokenizer parses
    (:func:`open_tokenizer`'s ``content``) rather than read the file again, replaced meanwhile."""
    recorded = recorded_tokenizer(trainer_state)
    if recorded is None or not recorded.startswith("bpe:"):
        return None  # an older checkpoint, or one whose data position records no tokenizer file
    from deepseek.errors import CheckpointError

    try:  # the read takes a regular file only: a FIFO, folder or huge file put there since its check is named
        content = _tokenizer_bytes(copy)
    except OSError as exc:
        fix = "check its permissions" if isinstance(exc, PermissionError) else "put back the run's own tokenizer.json"
        raise CheckpointError(f"{copy}: cannot read the run's tokenizer ({exc.strerror}); {fix}") from None
    if (found := _identity(content)) != recorded:
        raise CheckpointError(_not_the_run_tokenizer(copy, f"its content is {found}", recorded))
    return content


def check_parsed_tokenizer(file: str | Path, parsed: str | None, trainer_state: Any) -> None:
    """Refuse the tokenizer a dataset parsed from the run's ``file`` (``parsed``: its identity, as
    the dataset's data position records it; ``None``: byte tokens) when it is not the one
    ``trainer_state`` records, as :func:`check_run_tokenizer` refuses the file's bytes and a resume
    refuses the parsed identity (the data position's own check). A dataset reads ``data.tokenizer``
    by path, after its check: a file replaced in between is refused here, not used unchecked."""
    recorded = recorded_tokenizer(trainer_state)
    if recorded is None or not recorded.startswith("bpe:"):
        return  # an older checkpoint, or one whose data position records no tokenizer file
    if parsed != recorded:
        from deepseek.errors import CheckpointError

        raise CheckpointError(_not_the_run_tokenizer(Path(file), f"the data read it as {parsed or 'bytes'}, after "
                                                     "its check: it was replaced meanwhile", recorded))


def _not_the_run_tokenizer(copy: Path, found: str, recorded: str) -> str:
    """The line refusing the run's tokenizer file ``copy`` (``found``: what it was found to be) for
    not being the one the checkpoint ``recorded``."""
    return (f"{copy}: is not the tokenizer this run was trained with ({found}, the checkpoint recorded {recorded}); "
            "put back the run's own tokenizer.json (token ids would mean other text)")


def check_setting_tokenizer(setting: str, copy: Path, trainer_state: Any) -> bytes | None:
    """Refuse the file of a run's ``data.tokenizer`` ``setting``, used because the run folder's
    ``copy`` is no regular file (gone, or a folder, FIFO or broken link in its place: the line says
    which), when its content is not the tokenizer ``trainer_state`` records (the file was retrained
    or replaced since the run started: eval and generate read text as other ids, exit 0); else the
    bytes checked, as :func:`check_run_tokenizer`. A file that cannot be read (``None``) is left to
    the loading, which says why."""
    recorded = recorded_tokenizer(trainer_state)
    if recorded is None or not recorded.startswith("bpe:"):
        return None  # an older checkpoint, or one whose data position records no tokenizer file
    from deepseek.data.bpe import tokenizer_file
    from deepseek.errors import CheckpointError, UsageError

    try:
        content = _tokenizer_bytes(tokenizer_file(setting, "data.tokenizer"))
    except (OSError, UsageError):
        return None
    if (found := _identity(content)) != recorded:
        from deepseek.paths import not_a_file

        state = not_a_file(copy) or "is gone"
        raise CheckpointError(f"{setting}: is not the tokenizer this run was trained with (its content is {found}, "
                              f"the checkpoint recorded {recorded}), and the run's own copy {copy} {state}; put "
                              "the run's tokenizer.json back there (token ids would mean other text)")
    return content


def run_folder_of(checkpoint: Path) -> Path:
    """The run folder of a checkpoint folder (``RUN/checkpoints/step-N``), else the folder itself."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint
