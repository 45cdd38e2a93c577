"""Byte-level BPE tokenizers of Hugging Face ``tokenizers`` (the ``hf`` extra).

:func:`train_bpe` learns one from texts: byte-level pre-tokenization (every byte has a token, so
any text encodes), the document separator ``<|endoftext|>`` as special token id 0 (the id the
packer puts between documents, like byte ``0`` of byte tokens). :func:`load_bpe` opens any
local ``tokenizer.json`` (or a ``transformers`` tokenizer folder holding one), validated like user
input: unreadable (a FIFO, or more than :data:`MAX_TOKENIZER_BYTES`), not JSON, not a tokenizers
file, or without the separator token is one line naming the file. The separator is ``separator_token``; when that is the default
``<|endoftext|>``, the ``eos_token`` that a ``tokenizer_config.json`` (or
``special_tokens_map.json``) beside it declares, where the file has that token
(:func:`choose_separator`). A tokenizer is
identified by the hash of its file (:attr:`BPETokenizer.identity`), which saved data positions record.

``tokenizers`` is imported inside functions only; without it the one line names the extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from deepseek import durable
from deepseek.data.tokenizer import SEPARATOR_TOKEN, Tokenizer
from deepseek.errors import UsageError
from deepseek.parsing import loads_json, read_file, read_text
from deepseek.paths import usual_mode

INSTALL_HF = "pip install 'deepseek-core[hf]'"
MIN_VOCAB = 257
"""256 byte tokens and the separator."""
TOKENIZER_JSON = "tokenizer.json"
MAX_TOKENIZER_BYTES = 256 << 20
"""The largest ``tokenizer.json`` read (the largest published ones are a few tens of MiB); a
larger file, or one that is not a regular file (a FIFO would block the read), is refused."""
SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")
"""Where ``transformers`` writes a tokenizer's special tokens (bos/eos/pad), beside ``tokenizer.json``."""


def require_tokenizers(where: str) -> Any:
    """The ``tokenizers`` module, or one line naming ``where`` and the extra to install (also for
    a version outside the extra's range: :func:`deepseek.extras.check_version`)."""
    from deepseek.extras import check_version

    check_version("tokenizers", where=where)
    try:
        import tokenizers
    except ImportError:
        raise UsageError(
            f"{where}: BPE tokenizers need the Hugging Face tokenizers library, which is not "
            f"installed; {INSTALL_HF}"
        ) from None
    return tokenizers


class BPETokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` with its separator id and file hash (see the module docstring).
    ``content`` is the ``tokenizer.json`` it was parsed from, as read once (and checked, where a
    checkpoint records it): its hash is :attr:`identity`, and it is what an export writes."""

    def __init__(self, hf: Any, *, separator: int, content: bytes, source: str) -> None:
        self.hf = hf
        self.vocab_size = int(hf.get_vocab_size(with_added_tokens=True))
        self.separator = separator
        self.content = content
        self.identity = f"bpe:{file_digest(content)}"
        self.source = source
        self._token_bytes: tuple[int, ...] | None | bool = False  # False: not computed yet

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return list(self.hf.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of several texts (in parallel where ``tokenizers`` can)."""
        return [list(e.ids) for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int] | Any) -> str:
        """Text of token ids; ids outside the vocabulary are an error."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = list(ids)
        bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < self.vocab_size)]
        if bad:
            raise ValueError(f"BPETokenizer.decode: id {bad[0]!r} is outside the vocabulary 0..{self.vocab_size - 1}")
        return str(self.hf.decode(ids, skip_special_tokens=False))

    def token_bytes(self) -> tuple[int, ...] | None:
        """Bytes per token id of a byte-level tokenizer (see :func:`byte_level_token_bytes`)."""
        if self._token_bytes is False:
            self._token_bytes = byte_level_token_bytes(self.hf, self.separator)
        return self._token_bytes  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"BPETokenizer({self.source}, vocab_size={self.vocab_size})"


def byte_level_token_bytes(hf: Any, separator: int) -> tuple[int, ...] | None:
    """UTF-8 bytes of text each token id of ``hf`` stands for, when that is fixed per token.

    It is for a byte-level BPE (what :func:`train_bpe` writes, and GPT-2's ``tokenizer.json``):
    no normalizer, a ``ByteLevel`` pre-tokenizer that adds no prefix space, a ``ByteLevel``
    decoder, and every vocabulary token written in the 256-character byte alphabet, one
    character per byte. Then a token's bytes are the length of its vocabulary string; an added
    token's, the UTF-8 length of its text; the separator's, 1 (as the separator byte of byte
    tokens: the packer puts one between documents). ``None`` for any other tokenizer, whose
    tokens' bytes depend on their neighbours (a prefix space, ``##`` pieces, normalized text).
    """
    from tokenizers import pre_tokenizers

    spec = json.loads(hf.to_str())
    pre = spec.get("pre_tokenizer") or {}
    levels = [pre] if pre.get("type") == "ByteLevel" else \
        [p for p in pre.get("pretokenizers") or [] if isinstance(p, dict) and p.get("type") == "ByteLevel"]
    decoder = spec.get("decoder") or {}
    if spec.get("normalizer") is not None or not levels or any(p.get("add_prefix_space") for p in levels) \
            or decoder.get("type") != "ByteLevel":
        return None
    size = int(hf.get_vocab_size(with_added_tokens=True))
    added = {int(i): str(t.content) for i, t in hf.get_added_tokens_decoder().items()}
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    sizes = [0] * size
    for token, i in hf.get_vocab(with_added_tokens=False).items():
        if not 0 <= i < size or not set(token) <= alphabet:
            return None
        sizes[i] = len(token)
    for i, content in added.items():
        if not 0 <= i < size:
            return None
        sizes[i] = 1 if i == separator else len(content.encode("utf-8"))
    return tuple(sizes)


def file_digest(data: bytes) -> str:
    """The short hash that identifies a tokenizer file's content."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def tokenizer_file(path: str | os.PathLike[str], where: str) -> Path:
    """The ``tokenizer.json`` that ``path`` names: the file itself, or the one in a folder (what
    ``AutoTokenizer.save_pretrained`` writes for a fast tokenizer)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return p
    if (p / TOKENIZER_JSON).is_file():
        return p / TOKENIZER_JSON
    if (p / TOKENIZER_JSON).exists():
        raise UsageError(f"{where}: {str(p / TOKENIZER_JSON)!r} is not a file (a folder, device or socket); put the "
                         "tokenizer.json that tokenizers saved there, or name a tokenizer.json file")
    raise UsageError(f"{where}: folder {str(p)!r} has no tokenizer.json; save a fast tokenizer there "
                     "(AutoTokenizer.from_pretrained(DIR, use_fast=True).save_pretrained(DIR)) or name a "
                     "tokenizer.json file")


def declared_eos(file: Path) -> str | None:
    """The ``eos_token`` a ``tokenizer_config.json`` or ``special_tokens_map.json`` beside ``file``
    declares (a string, or ``{"content": ...}`` as transformers saves an ``AddedToken``), else
    ``None``. Such a file that is there but cannot be read, is not JSON, or declares something else
    than a token (a number, a list) is a UsageError naming it: passing over it would pick another
    separator than the tokenizer's own without a word."""
    for name in SPECIAL_TOKEN_FILES:
        path = file.parent / name
        if not path.exists() and not path.is_symlink():
            continue
        try:
            data = loads_json(read_text(path))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
            raise UsageError(f"{path}: cannot be read as JSON ({reason}); it declares the tokenizer's eos_token "
                             "(the document separator): save the tokenizer again, or remove the file") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a JSON object of the tokenizer's settings, got "
                             f"{type(data).__name__}; save the tokenizer again, or remove the file")
        eos = data.get("eos_token")
        token = eos.get("content") if isinstance(eos, dict) else eos
        if eos is not None and not isinstance(token, str):
            raise UsageError(f"{path}: eos_token must be a token (a string, or an object with its \"content\"), "
                             f"got {json.dumps(eos)[:80]}; fix it, or name the separator with data.separator_token")
        if token:
            return token
    return None


def _has_token(spec: Any, token: str) -> bool:
    """Whether the parsed ``tokenizer.json`` ``spec`` has ``token`` (an added token or in the vocabulary)."""
    if not isinstance(spec, dict):
        return False
    if any(isinstance(t, dict) and t.get("content") == token for t in spec.get("added_tokens") or []):
        return True
    vocab = (spec.get("model") or {}).get("vocab") if isinstance(spec.get("model"), dict) else None
    if isinstance(vocab, dict):
        return token in vocab
    return isinstance(vocab, list) and any(isinstance(v, list) and v and v[0] == token for v in vocab)


def choose_separator(file: Path, spec: Any, separator_token: str) -> str:
    """The document separator of the tokenizer ``file`` (parsed: ``spec``): ``separator_token``
    when it is not the default ``<|endoftext|>`` (chosen by the user); else the ``eos_token`` a
    ``tokenizer_config.json`` beside it declares, when the file has it (``</s>`` of most
    non-GPT-2 tokenizers, even where the file also has an ``<|endoftext|>``), else the default."""
    if separator_token != SEPARATOR_TOKEN:
        return separator_token
    eos = declared_eos(file)
    return eos if eos is not None and _has_token(spec, eos) else separator_token


def load_bpe(path: str | os.PathLike[str], separator_token: str = SEPARATOR_TOKEN, *,
             where: str = "data.tokenizer", content: bytes | None = None) -> BPETokenizer:
    """The tokenizer in the ``tokenizer.json`` at ``path`` (or in the folder ``path``), validated
    (see the module docstring). ``content``: the file's bytes, read (and checked against a digest)
    by the caller: parsed and hashed as they are, the file not read again, so what was checked is
    what is used."""
    tokenizers = require_tokenizers(where)
    p = tokenizer_file(path, where)
    try:
        data = read_file(p, MAX_TOKENIZER_BYTES) if content is None else content
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {str(p)!r} ({exc.strerror}); point it at a tokenizer.json "
                         "('deepseek tokenizer train' writes one)") from None
    try:
        text = data.decode("utf-8")
        spec = loads_json(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{where}: {str(p)!r} is not valid JSON ({str(exc).splitlines()[0]}); point it at a "
                         "Hugging Face tokenizer.json") from None
    try:
        hf = tokenizers.Tokenizer.from_str(text)
    except Exception as exc:  # noqa: BLE001 - the library raises plain Exceptions for bad files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{where}: {str(p)!r} is not a Hugging Face tokenizers file ({first}); point it at a "
                         "tokenizer.json written by tokenizers or 'deepseek tokenizer train'") from None
    size = int(hf.get_vocab_size(with_added_tokens=True))
    ids = hf.get_vocab(with_added_tokens=True).values()
    top = max(ids, default=-1)
    if top >= size or len(set(ids)) != len(ids):
        raise UsageError(f"{where}: {str(p)!r} has token ids that do not run 0..{size - 1} (largest {top}, "
                         f"{len(ids) - len(set(ids))} repeated) for its {size} tokens; the file is damaged or was "
                         "edited: use the tokenizer.json that tokenizers wrote")
    for n, entry in enumerate(spec.get("added_tokens") or []):  # the library keeps its own id, silently
        stated, content = (entry.get("id"), entry.get("content")) if isinstance(entry, dict) else (None, None)
        if isinstance(content, str) and isinstance(stated, int) and hf.token_to_id(content) != stated:
            raise UsageError(f"{where}: {str(p)!r} added_tokens[{n}] {content!r} states id {stated}, but the "
                             f"tokenizer gives it id {hf.token_to_id(content)}; the file is damaged or was edited: "
                             "use the tokenizer.json that tokenizers wrote")
    separator_token = choose_separator(p, spec, separator_token)
    separator = hf.token_to_id(separator_token)
    if separator is None:
        raise UsageError(
            f"{where}: {str(p)!r} has no document-separator token {separator_token!r} (nor an eos_token in a "
            "tokenizer_config.json beside it); name the tokenizer's end-of-document token (data.separator_token, "
            "or --separator) or add it as a special token"
        )
    return BPETokenizer(hf, separator=int(separator), content=data, source=str(p))


def train_bpe(texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2,
              separator_token: str = SEPARATOR_TOKEN) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` learnt from ``texts``, ``separator_token`` at id 0."""
    tokenizers = require_tokenizers("deepseek tokenizer train")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < MIN_VOCAB:
        raise UsageError(f"--vocab-size: {vocab_size} is below {MIN_VOCAB} (256 bytes and the separator); "
                         f"use at least {MIN_VOCAB}")
    if min_frequency < 1:
        raise UsageError(f"--min-frequency: must be >= 1, got {min_frequency}")
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[separator_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    hf.train_from_iterator(_nonempty(texts), trainer=trainer)
    return hf


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if t:
            yield t


def tokenizer_bytes(hf: Any) -> bytes:
    """The bytes :func:`write_tokenizer` writes for ``hf`` (their :func:`file_digest` is the
    tokenizer's identity, known without reading the file back)."""
    return hf.to_str(pretty=True).encode("utf-8")


def write_tokenizer(hf: Any, out: str | os.PathLike[str]) -> Path:
    """Write ``hf`` as ``tokenizer.json`` (:func:`tokenizer_bytes`) at ``out`` atomically (temp
    file + rename)."""
    target = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        usual_mode(fd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(tokenizer_bytes(hf))
        durable.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
