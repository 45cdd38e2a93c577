"""Packed, shuffled, resumable batches of byte tokens.

The split's pieces (see :mod:`deepseek.data.corpus`) are concatenated into one token stream,
each piece followed by the separator byte ``0`` (:data:`~deepseek.data.tokenizer.SEPARATOR`), so
documents are packed back to back with a visible boundary and no padding. The training stream is
endless: epoch ``e`` visits every piece once in an order shuffled by ``(seed, e)``.

The stream is consumed in *blocks* of ``shuffle_buffer`` rows. A row is ``seq_len + 1``
consecutive tokens (rows overlap by one token), giving ``x = row[:-1]`` and ``y = row[1:]``. The
rows of a block are yielded in an order shuffled by ``(seed, block index)``, which mixes documents
within a batch while only one block (``shuffle_buffer * seq_len`` bytes) is ever in memory.

The position is a handful of integers (epoch, piece cursor, byte offset of the current block's
start, block index, rows used): :meth:`PackedBatches.state_dict` is JSON-ready, and a loader that
loads it yields exactly the batches the original would have yielded next.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from deepseek.data.corpus import Piece, Split, TextCorpus
from deepseek.data.tokenizer import SEPARATOR
from deepseek.errors import UsageError

Batch = tuple[torch.Tensor, torch.Tensor]
STATE_VERSION = 1


class TokenStream:
    """Bytes of a split's pieces, each followed by the separator, epoch after epoch.

    The position is ``(epoch, cursor, offset)``: piece number ``cursor`` of the epoch's order,
    ``offset`` bytes into it (``offset == piece.length`` is the separator). With ``shuffle`` the
    order of epoch ``e`` is a permutation seeded by ``(seed, e)``, else the sorted order.
    With ``endless=False`` the stream ends after one epoch.
    """

    def __init__(self, pieces: list[Piece], *, seed: int, shuffle: bool, endless: bool) -> None:
        if not pieces:
            raise UsageError("data: this split holds no text; use a larger corpus or change data.val_fraction")
        self.pieces, self.seed, self.shuffle, self.endless = pieces, seed, shuffle, endless
        self.epoch = self.cursor = self.offset = 0
        self._order_epoch, self._order = -1, list(range(len(pieces)))

    def _piece(self) -> Piece:
        if self.shuffle and self._order_epoch != self.epoch:
            self._order = list(range(len(self.pieces)))
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(self._order)
            self._order_epoch = self.epoch
        return self.pieces[self._order[self.cursor]]

    @property
    def position(self) -> tuple[int, int, int]:
        """``(epoch, cursor, offset)``."""
        return self.epoch, self.cursor, self.offset

    def seek(self, position: tuple[int, int, int]) -> None:
        """Move to a position returned by :attr:`position`."""
        self.epoch, self.cursor, self.offset = (int(v) for v in position)

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` tokens as uint8 (fewer only at the end of a non-endless stream)."""
        parts: list[bytes] = []
        need = n
        while need > 0:
            if self.cursor == len(self.pieces):
                if not self.endless:
                    break
                self.epoch, self.cursor, self.offset = self.epoch + 1, 0, 0
            piece = self._piece()
            data = piece.read(self.offset, need)
            if len(data) < min(need, piece.length - self.offset):
                raise UsageError(f"data: {piece.path!r} shrank while reading; do not edit the corpus during a run")
            parts.append(data)
            need -= len(data)
            self.offset += len(data)
            if need > 0 and self.offset == piece.length:
                parts.append(bytes([SEPARATOR]))
                need -= 1
                self.cursor, self.offset = self.cursor + 1, 0
        return np.frombuffer(b"".join(parts), dtype=np.uint8)


class PackedBatches:
    """Global batches ``(x, y)``, each ``(global_batch, seq_len)`` int64, ``y`` = ``x`` shifted by one.

    ``split="train"`` iterates forever over shuffled epochs (see :attr:`epoch`);
    ``split="val"`` makes one pass in canonical order and stops. :meth:`val_batches` gives a
    fixed list of validation batches for evaluation, independent of ``seed`` and position.
    """

    def __init__(
        self,
        source: TextCorpus,
        seq_len: int,
        global_batch: int,
        split: Split = "train",
        seed: int = 0,
        shuffle_buffer: int = 1024,
    ) -> None:
        for name, value in (("seq_len", seq_len), ("global_batch", global_batch), ("shuffle_buffer", shuffle_buffer)):
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"data.{name}: must be a positive integer, got {value!r}")
        self.source, self.seq_len, self.global_batch = source, seq_len, global_batch
        self.split, self.seed = split, seed
        train = split == "train"
        self.shuffle_buffer = shuffle_buffer  # the block size; validation rows are not permuted
        self._stream = TokenStream(source.pieces(split), seed=seed, shuffle=train, endless=train)
        self._block_start = self._stream.position
        self._block_index = 0
        self._row = 0
        self._rows: torch.Tensor | None = None  # the current block, rows in yield order
        self._done = False

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
        stream = TokenStream(self.source.pieces("val"), seed=0, shuffle=False, endless=True)
        need = n * self.global_batch * self.seq_len + 1
        tokens = torch.from_numpy(stream.read(need).copy()).long()
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
        start = self._next_block_start if at_end else self._block_start
        return {
            "version": STATE_VERSION,
            "split": self.split,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "shuffle_buffer": self.shuffle_buffer,
            "fingerprint": self.source.fingerprint(self.split),
            "epoch": start[0],
            "cursor": start[1],
            "offset": start[2],
            "block_index": self._block_index + (1 if at_end else 0),
            "row": 0 if at_end else self._row,
            "done": self._done and at_end,
        }

    def _check_position(self, state: dict[str, Any]) -> None:
        """The position's numbers are whole numbers within this split and block size."""
        pieces = self._stream.pieces
        limits = {"epoch": None, "cursor": len(pieces), "offset": max(p.length for p in pieces),
                  "block_index": None, "row": self.shuffle_buffer}
        for key, limit in limits.items():
            value = state.get(key)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
                limit is not None and value > limit
            ):
                bound = f" and <= {limit}" if limit is not None else ""
                raise UsageError(
                    f"data position: {key} is {value!r}, expected a whole number >= 0{bound}; the saved "
                    "position is corrupt: resume from an earlier checkpoint or start a new run"
                )
        if not isinstance(state.get("done", False), bool):
            raise UsageError(f"data position: done is {state['done']!r}, expected true or false; the saved "
                             "position is corrupt: resume from an earlier checkpoint or start a new run")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; the data and shape settings must match."""
        for key in ("split", "seed", "seq_len", "shuffle_buffer", "fingerprint"):
            mine = self.state_dict()[key]
            if state.get(key) != mine:
                what = "the corpus changed since it was saved" if key == "fingerprint" else f"it was saved with {key}={state.get(key)!r}, this run has {mine!r}"
                raise UsageError(f"data position: cannot resume: {what}; use the same data settings or start a new run")
        self._check_position(state)
        self._block_start = (state["epoch"], state["cursor"], state["offset"])
        self._block_index, self._row = state["block_index"], state["row"]
        self._rows, self._done = None, state.get("done", False)
        if self._done:
            self._rows = torch.zeros((0, self.seq_len + 1), dtype=torch.uint8)
            self._next_block_start = self._block_start
