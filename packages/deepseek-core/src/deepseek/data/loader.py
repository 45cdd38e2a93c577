"""Packed, shuffled, resumable batches of token ids.

The split's documents (see :mod:`deepseek.data.sources`: the ``text`` corpus's pieces, the
``hf`` dataset's records) are concatenated into one token stream, each document followed by the
tokenizer's separator (byte ``0``, :data:`~deepseek.data.tokenizer.SEPARATOR`, for byte tokens),
so documents are packed back to back with a visible boundary and no padding. The training stream
is endless: epoch ``e`` visits every unit (piece, file) once in an order shuffled by
``(seed, e)``.

The stream is consumed in *blocks* of ``shuffle_buffer`` rows. A row is ``seq_len + 1``
consecutive tokens (rows overlap by one token), giving ``x = row[:-1]`` and ``y = row[1:]``. The
rows of a block are yielded in an order shuffled by ``(seed, block index)``, which mixes documents
within a batch while only one block (``shuffle_buffer * seq_len`` tokens) is ever in memory.

The position is a handful of integers (epoch, unit cursor, document index within the unit where
units hold several, token offset of the current block's start, block index, rows used):
:meth:`PackedBatches.state_dict` is JSON-ready (with the tokenizer's identity when it is not
bytes), and a loader that loads it yields exactly the batches the original would have yielded
next.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from deepseek.data.corpus import Split, TextCorpus
from deepseek.data.sources import DocReader, DocSource, PieceReader, PieceSource
from deepseek.data.tokenizer import SEPARATOR, ByteTokenizer
from deepseek.errors import UsageError

Batch = tuple[torch.Tensor, torch.Tensor]
STATE_VERSION = 1
EVAL_BATCHES = "data.eval_batches"
"""The setting that counts the validation batches (:meth:`PackedBatches.val_batches`' ``n``)."""
_CORRUPT = "the saved position is corrupt: resume from an earlier checkpoint or start a new run"



class OverMemory(UsageError):
    """An allocation of token ids refused before it is tried (:func:`check_fits_memory`). Its line
    is built from ``terms``, each setting whose product the allocation is as ``(setting, how the
    line names it)``, so a caller that knows a count came from elsewhere (a command's option) names
    it so (:meth:`naming`), from the same data."""

    def __init__(self, terms: Sequence[tuple[str, str]], tokens: int, memory: int) -> None:
        self.terms, self.tokens, self.memory = tuple(terms), tokens, memory
        said = " x ".join(shown for _, shown in self.terms)
        super().__init__(_over_memory(f"{said} = {tokens:,} tokens, {tokens * 8 / 2**30:,.0f} GiB as int64 ids",
                                      memory, "them"))

    def __reduce__(self) -> tuple[type[OverMemory], tuple[tuple[tuple[str, str], ...], int, int]]:
        return OverMemory, (self.terms, self.tokens, self.memory)  # pickled as built (another process's error)

    def naming(self, setting: str, shown: str) -> OverMemory:
        """The same refusal with ``setting`` named ``shown``."""
        return OverMemory([(s, shown if s == setting else was) for s, was in self.terms], self.tokens, self.memory)


def setting(name: str, value: int) -> tuple[str, str]:
    """A config setting as a term of :func:`check_fits_memory`: named ``data.seq_len 512``."""
    return name, f"{name} {value}"


def check_fits_memory(tokens: int, *terms: tuple[str, str]) -> None:
    """:class:`OverMemory` when one allocation of ``tokens`` int64 token ids (the product of
    ``terms``: :func:`setting`, or ``(option, how it was given)``) is larger than this machine's
    memory: refused in one line before it is tried, instead of the process being killed."""
    memory = _machine_memory()
    if memory is not None and tokens * 8 > memory:
        raise OverMemory(terms, tokens, memory)


def refuse_over_memory(nbytes: int, said: str, lower: str = "it") -> None:
    """UsageError ``"<said>: more than this machine's N GiB of memory; lower <lower>"`` when one
    batch of ``nbytes`` cannot fit in this machine's memory (no check where the platform does not say)."""
    memory = _machine_memory()
    if memory is not None and nbytes > memory:
        raise UsageError(_over_memory(said, memory, lower))


def _machine_memory() -> int | None:
    """This machine's memory in bytes, or ``None`` where the platform does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _over_memory(said: str, memory: int, lower: str) -> str:
    return f"{said}: more than this machine's {memory / 2**30:,.0f} GiB of memory; lower {lower}"


class TokenStream:
    """Tokens of a split's units, each document followed by the separator, epoch after epoch.

    The position is ``(epoch, cursor, offset)`` for units of one document each (``single_doc``),
    else ``(epoch, cursor, doc, offset)``: unit number ``cursor`` of the epoch's order, its
    document ``doc``, ``offset`` tokens into it (``offset`` equal to the document's length is the
    separator). With ``shuffle`` the order of epoch ``e`` is a permutation seeded by ``(seed, e)``,
    else the canonical order. With ``endless=False`` the stream ends after one epoch. The default
    reader gives the bytes of text corpus pieces.
    """

    def __init__(
        self,
        units: Sequence[Any],
        *,
        seed: int,
        shuffle: bool,
        endless: bool,
        reader: DocReader | None = None,
        separator: int = SEPARATOR,
        single_doc: bool = True,
        where: str = "this split",
    ) -> None:
        if not units:
            raise UsageError("data: this split holds no text; use a larger corpus or change data.val_fraction")
        self.pieces, self.seed, self.shuffle, self.endless = list(units), seed, shuffle, endless
        self.reader = reader or PieceReader(ByteTokenizer())
        self.separator, self.single_doc, self.where = separator, single_doc, where
        self.epoch = self.cursor = self.doc = self.offset = 0
        self._order_epoch, self._order = -1, list(range(len(self.pieces)))
        self._cache: dict[tuple[int, int], np.ndarray | None] = {}  # this document and the one before
        self._dtype: Any = None

    def _unit(self) -> int:
        if self.shuffle and self._order_epoch != self.epoch:
            self._order = list(range(len(self.pieces)))
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(self._order)
            self._order_epoch = self.epoch
        return self._order[self.cursor]

    def _ids(self) -> np.ndarray | None:
        key = (self._unit(), self.doc)
        if key not in self._cache:
            ids = self.reader.doc(self.pieces[key[0]], self.doc)
            if len(self._cache) >= 2:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = ids
            if ids is not None and self._dtype is None:
                self._dtype = ids.dtype
        return self._cache[key]

    @property
    def position(self) -> tuple[int, ...]:
        """``(epoch, cursor, offset)`` or ``(epoch, cursor, doc, offset)`` (see the class)."""
        if self.single_doc:
            return self.epoch, self.cursor, self.offset
        return self.epoch, self.cursor, self.doc, self.offset

    def seek(self, position: tuple[int, ...]) -> None:
        """Move to a position returned by :attr:`position`."""
        values = [int(v) for v in position]
        if self.single_doc:
            values.insert(2, 0)
        self.epoch, self.cursor, self.doc, self.offset = values

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` tokens (fewer only at the end of a non-endless stream)."""
        parts: list[np.ndarray] = []
        need, idle = n, 0
        while need > 0:
            if self.cursor == len(self.pieces):
                if not self.endless:
                    break
                self.epoch, self.cursor, self.doc, self.offset = self.epoch + 1, 0, 0, 0
            ids = self._ids()
            if ids is None or (len(ids) == 0 and self.offset == 0):  # past the unit's end, or no text
                idle += 1
                if ids is None:
                    self.cursor, self.doc, self.offset = self.cursor + 1, 0, 0
                    if idle > 2 * len(self.pieces) and not parts:
                        raise UsageError(f"data: {self.where} holds no text (no document, or only empty ones); "
                                         "give it documents with text")
                else:
                    self.doc += 1
                continue
            if self.offset > len(ids):
                raise UsageError(f"data position: offset {self.offset} is past the end of its document "
                                 f"({len(ids)} tokens); {_CORRUPT}")
            take = ids[self.offset:self.offset + need]
            parts.append(take)
            need -= len(take)
            self.offset += len(take)
            if need > 0 and self.offset == len(ids):
                parts.append(np.asarray([self.separator], dtype=ids.dtype))
                need -= 1
                if self.single_doc:
                    self.cursor, self.offset = self.cursor + 1, 0
                else:
                    self.doc, self.offset = self.doc + 1, 0
        if not parts:
            return np.zeros(0, dtype=self._dtype or np.uint8)
        return np.concatenate(parts)


class PackedBatches:
    """Global batches ``(x, y)``, each ``(global_batch, seq_len)`` int64, ``y`` = ``x`` shifted by one.

    ``split="train"`` iterates forever over shuffled epochs (see :attr:`epoch`);
    ``split="val"`` makes one pass in canonical order and stops. :meth:`val_batches` gives a
    fixed list of validation batches for evaluation, independent of ``seed`` and position.
    """

    def __init__(
        self,
        source: TextCorpus | DocSource,
        seq_len: int,
        global_batch: int,
        split: Split = "train",
        seed: int = 0,
        shuffle_buffer: int = 1024,
    ) -> None:
        for name, value in (("seq_len", seq_len), ("global_batch", global_batch), ("shuffle_buffer", shuffle_buffer)):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"data.{name}: must be a positive integer, got {value!r}")
        check_fits_memory(global_batch * seq_len, setting("data.batch_size", global_batch), setting("data.seq_len", seq_len))
        check_fits_memory(shuffle_buffer * seq_len, setting("data.shuffle_buffer", shuffle_buffer),
                          setting("data.seq_len", seq_len))
        self.source = source if isinstance(source, DocSource) else PieceSource(source)
        self.seq_len, self.global_batch = seq_len, global_batch
        self.split, self.seed = split, seed
        train = split == "train"
        self.shuffle_buffer = shuffle_buffer  # the block size; validation rows are not permuted
        self._stream = self._open(split, shuffle=train, endless=train)
        self._block_start = self._stream.position
        self._block_index = 0
        self._row = 0
        self._rows: torch.Tensor | None = None  # the current block, rows in yield order
        self._done = False

    def _open(self, split: Split, *, shuffle: bool, endless: bool) -> TokenStream:
        src = self.source
        return TokenStream(src.units(split), seed=self.seed if shuffle else 0, shuffle=shuffle, endless=endless,
                           reader=src.reader(), separator=src.tokenizer.separator, single_doc=src.single_doc,
                           where=src.describe(split))

    def probe(self, split: Split) -> None:
        """Read the first token of ``split`` (a one-line UsageError when its data is unusable or
        holds no text); the position does not move."""
        self._open(split, shuffle=False, endless=True).read(1)

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        rows = []
        for _ in range(self.global_batch):
            row = self._next_row()
            if row is None:
                raise StopIteration
            rows.append(row)
        batch = torch.stack(rows).long()
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def _next_row(self) -> torch.Tensor | None:
        if self._rows is not None and self._row >= len(self._rows):
            self._block_start, self._block_index, self._row, self._rows = self._next_block_start, self._block_index + 1, 0, None
        if self._rows is None:
            if self._done:
                return None
            self._load_block()
            if len(self._rows) == 0:  # type: ignore[arg-type]
                self._done = True
                return None
        row = self._rows[self._row]  # type: ignore[index]
        self._row += 1
        return row

    def _load_block(self) -> None:
        t, n = self.seq_len, self.shuffle_buffer
        self._stream.seek(self._block_start)
        body = self._stream.read(n * t)
        self._next_block_start = self._stream.position
        tail = self._stream.read(1)  # the next block re-reads this overlap token
        tokens = torch.from_numpy(np.concatenate([body, tail]).copy())
        count = (len(tokens) - 1) // t
        if count < n:
            self._done = True  # end of a finite (validation) stream
        rows = tokens[: count * t + 1].unfold(0, t + 1, t) if count else tokens.new_zeros((0, t + 1))
        if self.split == "train" and count > 1:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self._block_index)
            rows = rows[torch.randperm(count, generator=g)]
        self._rows = rows

    @property
    def epoch(self) -> int:
        """Epoch of the training stream the next batch comes from (0-based)."""
        if self._rows is not None and self._row >= len(self._rows):
            return self._next_block_start[0]
        return self._block_start[0]

    # ------------------------------------------------------------------ evaluation

    def val_batches(self, n: int) -> list[Batch]:
        """The first ``n`` validation batches (canonical order, no shuffle); the validation stream
        is repeated if it is shorter than ``n`` batches."""
        check_fits_memory(n * self.global_batch * self.seq_len, setting(EVAL_BATCHES, n),
                          setting("data.batch_size", self.global_batch), setting("data.seq_len", self.seq_len))
        stream = self._open("val", shuffle=False, endless=True)
        need = n * self.global_batch * self.seq_len + 1
        tokens = torch.from_numpy(stream.read(need).copy()).long()
        if len(tokens) < need:
            raise UsageError(f"data: {stream.where} holds no text; give it documents with text")
        rows = tokens.unfold(0, self.seq_len + 1, self.seq_len)
        out = []
        for i in range(n):
            chunk = rows[i * self.global_batch : (i + 1) * self.global_batch]
            out.append((chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()))
        return out

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready position: loading it into an equal loader resumes with the same batches."""
        at_end = self._rows is not None and self._row >= len(self._rows)
        start = list(self._next_block_start if at_end else self._block_start)
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "split": self.split,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "shuffle_buffer": self.shuffle_buffer,
            "fingerprint": self.source.fingerprint(self.split),
        }
        if self.source.tokenizer.identity != ByteTokenizer.identity:
            state["tokenizer"] = self.source.tokenizer.identity
        state["epoch"], state["cursor"] = start[0], start[1]
        if not self.source.single_doc:
            state["doc"] = start[2]
        state["offset"] = start[-1]
        state.update({
            "block_index": self._block_index + (1 if at_end else 0),
            "row": 0 if at_end else self._row,
            "done": self._done and at_end,
        })
        return state

    def _check_position(self, state: dict[str, Any]) -> None:
        """The position's numbers are whole numbers within this split and block size."""
        limits: dict[str, int | None] = {
            "epoch": None, "cursor": len(self._stream.pieces), "offset": self.source.offset_limit(self.split),
            "block_index": 2**53, "row": self.shuffle_buffer,  # block_index seeds a generator: it stays in range
        }
        if not self.source.single_doc:
            limits["doc"] = None
        for key, limit in limits.items():
            value = state.get(key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
                limit is not None and value > limit
            ):
                bound = f" and <= {limit}" if limit is not None else ""
                raise UsageError(f"data position: {key} is {value!r}, expected a whole number >= 0{bound}; {_CORRUPT}")
        if not isinstance(state.get("done", False), bool):
            raise UsageError(f"data position: done is {state['done']!r}, expected true or false; {_CORRUPT}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; the data, tokenizer and shape settings must match."""
        if not isinstance(state, dict):
            raise UsageError(f"data position: expected a table, got {type(state).__name__}; {_CORRUPT}")
        mine = self.state_dict()
        version = state.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise UsageError(f"data position: version is {version!r}, this deepseek-core reads version {STATE_VERSION}; "
                             f"{_CORRUPT}")
        for key in ("split", "seed", "seq_len", "shuffle_buffer", "fingerprint", "tokenizer"):
            if state.get(key) != mine.get(key):
                if key == "fingerprint":
                    what = "the corpus changed since it was saved"
                elif key == "tokenizer":
                    what = (f"it was saved with tokenizer {state.get(key) or 'bytes'}, this run has "
                            f"{mine.get(key) or 'bytes'} (data.tokenizer)")
                else:
                    what = f"it was saved with {key}={state.get(key)!r}, this run has {mine.get(key)!r}"
                raise UsageError(f"data position: cannot resume: {what}; use the same data settings or start a new run")
        self._check_position(state)
        doc = () if self.source.single_doc else (state["doc"],)
        self._block_start = (state["epoch"], state["cursor"], *doc, state["offset"])
        self._block_index, self._row = state["block_index"], state["row"]
        self._rows, self._done = None, state.get("done", False)
        if self._done:
            self._rows = torch.zeros((0, self.seq_len + 1), dtype=torch.uint8)
            self._next_block_start = self._block_start
