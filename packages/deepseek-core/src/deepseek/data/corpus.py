"""Text corpora: the embedded standard-library corpus and user files or folders.

A corpus is a sorted list of files cut into *pieces* of at most ``piece_bytes`` (1 MiB), each
read from disk only when a batch needs it, so a corpus of any size streams in constant memory.
Nothing is tokenized up front.

Train/validation split: a piece goes to validation when a stable hash (BLAKE2b) of its key falls
below ``val_fraction``. The key is the file's path relative to the corpus root (POSIX form), with
``#<i>`` appended for the i-th piece of a file larger than one piece; so a normal source file is
wholly in one split, and the split of a file never depends on the other files. If the hash leaves
a split empty (tiny corpora), the last piece goes to validation, or — with a single piece — its
last ``val_fraction`` of bytes does.

The embedded corpus is the running Python's standard-library ``.py`` sources
(``sysconfig.get_paths()["stdlib"]``, without ``site-packages``): ~1,800 files, ~31 MB on
CPython 3.11. It is deterministic for one Python version; another version has other files, which
:meth:`TextCorpus.fingerprint` detects.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deepseek.data.text_check import check_files, check_nul, not_utf8, unreadable
from deepseek.errors import UsageError
from deepseek.parsing import open_file

Split = Literal["train", "val"]
PIECE_BYTES = 1 << 20
DEFAULT_VAL_FRACTION = 0.05
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}


@dataclass(frozen=True)
class Piece:
    """``length`` bytes of file ``path`` from byte ``start``; ``key`` names it for the split."""

    path: str
    key: str
    start: int
    length: int

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes of this piece starting ``offset`` bytes into it."""
        n = max(0, min(n, self.length - offset))
        if n == 0:
            return b""
        try:  # a regular file: one replaced by a FIFO since the corpus opened would block the read
            with open_file(self.path) as f:
                f.seek(self.start + offset)
                return f.read(n)
        except OSError as exc:
            raise unreadable(self.path, exc) from None

    def whole(self, *, strict: bool = False) -> bytes:
        """All the piece's bytes; a file that shrank since the corpus was opened is a UsageError.
        ``strict``: so is a NUL byte, which no text file holds (:mod:`deepseek.data.text_check`)."""
        data = self.read(0, self.length)
        if len(data) < self.length:
            raise UsageError(f"data: {self.path!r} shrank while reading; do not edit the corpus during a run")
        if strict:
            check_nul(self.path, data, self.start)
        return data

    def text(self, *, strict: bool) -> str:
        """The piece as text for a tokenizer: its bytes decoded as UTF-8. ``strict``: a NUL byte, or a
        byte that is not UTF-8, is a UsageError naming the file and the byte's offset (a Latin-1 file would
        be read with U+FFFD in place of each accented letter); a character cut by the piece's own
        edges (inside a file longer than one piece) is not. Otherwise, and at those edges, such
        bytes become U+FFFD."""
        data = self.whole(strict=strict)
        if strict:
            lead = 0  # continuation bytes of a character that began in the piece before
            while self.start > 0 and lead < min(3, len(data)) and data[lead] & 0xC0 == 0x80:
                lead += 1
            ends_inside = self.start + self.length < os.path.getsize(self.path)
            try:
                codecs.getincrementaldecoder("utf-8")().decode(data[lead:], final=not ends_inside)
            except UnicodeDecodeError as exc:
                raise not_utf8(self.path, data[lead + exc.start], self.start + lead + exc.start) from None
        return data.decode("utf-8", errors="replace")


def _unit_hash(key: str) -> float:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class TextCorpus:
    """Files under ``root`` (relative names ``files``), cut into pieces and split train/val."""

    def __init__(
        self,
        root: Path,
        files: Sequence[str],
        *,
        name: str,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        piece_bytes: int = PIECE_BYTES,
    ) -> None:
        if not 0 <= val_fraction < 1:
            raise UsageError(f"data.val_fraction: must be in [0, 1), got {val_fraction!r}")
        self.root = Path(root)
        self.name = name
        self.strict_text = True
        """Whether a piece that is not text is refused when read: a NUL byte, or with a tokenizer a
        byte that is not UTF-8 (:meth:`Piece.text`, :meth:`Piece.whole`)."""
        self.val_fraction = val_fraction
        self.piece_bytes = piece_bytes
        pieces: list[Piece] = []
        for rel in sorted(files):
            path = str(self.root / rel)
            size = os.path.getsize(path)
            count = -(-size // piece_bytes)
            for i in range(count):
                key = rel if count == 1 else f"{rel}#{i}"
                start = i * piece_bytes
                pieces.append(Piece(path, key, start, min(piece_bytes, size - start)))
        if not pieces:
            raise UsageError(f"data.path: {name} contains no text (all files are empty); add text files")
        self._splits = self._split(pieces)

    def _split(self, pieces: list[Piece]) -> dict[str, list[Piece]]:
        frac = self.val_fraction
        is_val = [_unit_hash(p.key) < frac for p in pieces]
        val = [p for p, v in zip(pieces, is_val, strict=True) if v]
        train = [p for p, v in zip(pieces, is_val, strict=True) if not v]
        if frac > 0 and (not val or not train):
            if len(pieces) > 1:
                train, val = pieces[:-1], pieces[-1:]
            else:
                p = pieces[0]
                n_val = max(1, int(p.length * frac)) if p.length > 1 else 0
                train = [Piece(p.path, p.key, p.start, p.length - n_val)]
                val = [Piece(p.path, p.key + "#val", p.start + p.length - n_val, n_val)] if n_val else []
        return {"train": train, "val": val}

    def pieces(self, split: Split) -> list[Piece]:
        """Pieces of ``split`` in their canonical (sorted) order."""
        if split not in self._splits:
            raise UsageError(f"data split: {split!r} is not 'train' or 'val'")
        return self._splits[split]

    def num_bytes(self, split: Split) -> int:
        """Total bytes of ``split`` (without document separators)."""
        return sum(p.length for p in self.pieces(split))

    def fingerprint(self, split: Split) -> str:
        """Short hash of the split's piece keys and sizes; changes when the data changes."""
        h = hashlib.blake2b(digest_size=8)
        for p in self.pieces(split):
            h.update(f"{p.key}\0{p.start}\0{p.length}\n".encode())
        return h.hexdigest()

    def describe(self) -> dict[str, object]:
        """Name, root, and files/bytes per split, for logs and run metadata."""
        return {
            "name": self.name,
            "root": str(self.root),
            "val_fraction": self.val_fraction,
            "train_pieces": len(self.pieces("train")),
            "train_bytes": self.num_bytes("train"),
            "val_pieces": len(self.pieces("val")),
            "val_bytes": self.num_bytes("val"),
        }

    def __repr__(self) -> str:
        d = self.describe()
        return f"TextCorpus({self.name}: {d['train_bytes']} train bytes, {d['val_bytes']} val bytes)"


def stdlib_corpus(val_fraction: float = DEFAULT_VAL_FRACTION) -> TextCorpus:
    """The running Python's standard-library ``.py`` sources."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[str] = []
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(root)
            files.extend((rel_dir / f).as_posix() for f in filenames if f.endswith(".py"))
    if not files:
        raise UsageError(
            f"embedded corpus: no standard-library .py sources under {str(root)!r} (this Python "
            "ships them compiled or zipped); set data.path to a text file or folder"
        )
    corpus = TextCorpus(root, files, name=f"python-stdlib ({root})", val_fraction=val_fraction)
    corpus.strict_text = False  # a few test files are Latin-1 or KOI8-R on purpose (test_source_encoding.py)
    return corpus


def path_corpus(
    path: str | os.PathLike[str],
    pattern: str | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    *,
    utf8: bool = False,
) -> TextCorpus:
    """A text file, or the files under a folder matching glob ``pattern`` (default ``**/*``:
    every file, recursively, skipping hidden files and folders). Each file is checked as it opens
    (:mod:`deepseek.data.text_check`; ``utf8``: a tokenizer reads it, so it must be UTF-8), and a
    symbolic link the pattern matches that leads nowhere is refused naming it."""
    p = Path(path).expanduser()
    if not p.exists():
        from deepseek.paths import broken_link

        link = broken_link(p)
        if link is not None:
            raise UsageError(f"data.path: {str(path)!r} {link}; point it at the text file or folder itself")
        raise UsageError(
            f"data.path: {str(path)!r} does not exist; point it at a text file or a folder of "
            "text files, or leave it empty for the embedded corpus"
        )
    if p.is_file():
        if pattern:
            _unused_pattern(pattern, f"data.path {str(path)!r} is a file, read whole")
        check_files([str(p)], utf8=utf8)
        return TextCorpus(p.parent, [p.name], name=str(p), val_fraction=val_fraction)
    if not p.is_dir():
        raise UsageError(
            f"data.path: {str(path)!r} is neither a regular file nor a folder (a device, FIFO or "
            "socket); point it at a text file or a folder of text files"
        )
    pattern = pattern or "**/*"
    try:
        found = list(p.glob(pattern))
    except (ValueError, NotImplementedError) as exc:
        raise UsageError(
            f"data.pattern: {pattern!r} is not a glob pattern relative to data.path ({exc}); give one "
            "such as '**/*.txt'"
        ) from None
    visible = (f for f in sorted(found) if not any(part.startswith(".") for part in f.relative_to(p).parts))
    files = sorted(name for f in visible if (name := _listed(p, f)))
    if not files:
        raise UsageError(
            f"data.path: folder {str(path)!r} has no files matching {pattern!r}; add text files "
            "there or change the pattern (data.pattern)"
        )
    check_files([str(p / f) for f in files], utf8=utf8)
    return TextCorpus(p, files, name=str(p), val_fraction=val_fraction)


def _listed(root: Path, found: Path) -> str:
    """``found``'s name relative to ``root`` when it is a regular file, ``""`` when it is not (a
    folder, a FIFO); a symbolic link that leads nowhere is refused."""
    if found.is_file():
        return found.relative_to(root).as_posix()
    if found.is_symlink() and not found.exists():
        from deepseek.paths import broken_link

        raise UsageError(f"data.path: {str(found)!r} {broken_link(found) or 'is a broken symbolic link'}; fix or "
                         "remove the link, or leave it out with data.pattern")
    return ""


def _unused_pattern(pattern: str, why: str) -> None:
    """Warn (once, on rank 0 of a job) that ``data.pattern`` selects nothing here and ``why``."""
    if os.environ.get("RANK", "0") == "0":
        from deepseek.config.ineffective import IneffectiveSettingWarning

        warnings.warn(f"data.pattern: {pattern!r} selects files under a data.path folder, but {why}; the pattern "
                      "is not used: remove data.pattern, or point data.path at the folder", IneffectiveSettingWarning,
                      stacklevel=2)


def open_corpus(
    path: str | os.PathLike[str] | None = None,
    *,
    pattern: str | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    utf8: bool = False,
) -> TextCorpus:
    """The corpus for ``data.path``: empty or ``None`` means the embedded stdlib corpus (not
    checked: see :func:`stdlib_corpus`); ``utf8``: see :func:`path_corpus`."""
    if path is None or str(path) == "":
        if pattern:
            _unused_pattern(pattern, "data.path is empty: the embedded corpus is read")
        return stdlib_corpus(val_fraction)
    return path_corpus(path, pattern, val_fraction, utf8=utf8)
