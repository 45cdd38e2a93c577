"""The ``hf`` dataset: Hugging Face ``datasets`` over local files, streamed and packed.

``data.files`` (paths or globs) are JSON lines (``.jsonl``/``.json``), Parquet (``.parquet``),
CSV (``.csv``) or plain text (``.txt``: one record per paragraph), the format read from each
file's extension or set with ``data.format`` (:mod:`deepseek.data.hf_files` finds the files and
their formats). Each file is streamed with
``datasets.load_dataset(<format>, data_files=[file], streaming=True)``: only local files, never
the Hub. Uncompressed plain-text files are checked whole when the files open, before training
(:data:`deepseek.data.text_check.HF_TEXT`: UTF-8, no NUL byte). Every record's ``data.text_field`` is one document, tokenized (bytes or
``data.tokenizer``) and packed like the ``text`` dataset (:mod:`deepseek.data.packed`).

Validation: the files of ``data.val_files`` when given; else a file goes to validation when a
stable hash of its name falls below ``data.val_fraction`` (as the ``text`` corpus splits files;
when that leaves a split empty, the last file is validation), and a single file is split by
record (record ``i`` by the hash of ``<name>#<i>``).

Position: ``(epoch, file cursor, record, token offset)`` in the data position of checkpoints, so
a resumed run reads exactly the batches an uninterrupted one would have (records before the
position are skipped by reading through the file). Needs ``pip install 'deepseek-core[hf]'``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepseek.config.validate import did_you_mean
from deepseek.data.hf_files import (  # FORMATS, COMPRESSED re-exported
    COMPRESSED,
    FORMATS,  # noqa: F401
    expand_files,
    extension_format,
    format_of,
    is_json_lines,
)
from deepseek.data.packed import TokenDataset, TokenOptions
from deepseek.data.sources import DocReader, DocSource
from deepseek.data.text_check import HF_TEXT, check_files
from deepseek.data.tokenizer import ByteTokenizer, Tokenizer
from deepseek.errors import ConfigError, UsageError

INSTALL_HF = "pip install 'deepseek-core[hf]'"


@dataclass(frozen=True)
class HFOptions(TokenOptions):
    """``[data]`` keys of the ``hf`` dataset."""

    files: tuple[str, ...] = ()
    """Local files to read: paths or globs (``**`` recurses), or folders written by
    ``Dataset.save_to_disk``. Stored as absolute paths of the files."""
    val_files: tuple[str, ...] = ()
    """Validation files (paths or globs); empty: split ``files`` by ``val_fraction``."""
    format: Literal["", "json", "parquet", "csv", "text", "arrow"] = ""
    """The files' format; empty: from each file's extension (``.jsonl``/``.json``, ``.parquet``,
    ``.csv``, ``.txt``: one record per paragraph, ``.arrow``: ``Dataset.save_to_disk`` shards;
    ``.gz``/``.bz2``/``.xz`` after it: compressed)."""
    text_field: str = "text"
    """The column holding each record's text."""
    csv_delimiter: str = ","
    """CSV files: the one character between columns (``";"``, ``"\\t"`` for tab-separated files)."""
    json_field: str = ""
    """JSON files (not ``.jsonl``) whose top level is an object: the key holding the list of records
    (``{"data": [{"text": ...}, ...]}``: ``"data"``); empty: one record per line or a top-level list."""

    def __post_init__(self) -> None:
        import importlib.util

        if importlib.util.find_spec("datasets") is None:
            raise ConfigError(f"data.name: the 'hf' dataset needs the Hugging Face datasets library, which is not "
                              f"installed; {INSTALL_HF}")
        from deepseek.extras import check_version

        check_version("datasets", where="data.name: the 'hf' dataset", error=ConfigError)
        super().__post_init__()
        if not self.files:
            raise ConfigError("data.files: the 'hf' dataset reads local files; set data.files = [\"data/*.jsonl\"] "
                              "(JSON lines, Parquet, CSV or .txt)")
        if not self.text_field:
            raise ConfigError("data.text_field: must name a column, e.g. \"text\"")
        if len(self.csv_delimiter) != 1 or self.csv_delimiter in "\r\n\"":
            raise ConfigError(f"data.csv_delimiter: {self.csv_delimiter!r} must be one character other than a quote or "
                              "a line break, e.g. \";\" or \"\\t\"")
        files = expand_files(self.files, "data.files")
        val = expand_files(self.val_files, "data.val_files") if self.val_files else ()
        both = sorted(set(files) & set(val))
        if both:
            raise ConfigError(f"data.val_files: {both[0]!r} is also in data.files; a file is either trained on or "
                              "held out")
        formats = {format_of(f, self.format) for f in (*files, *val)}
        documents = [f for f in (*files, *val) if format_of(f, self.format) == "json" and not is_json_lines(f)]
        if self.json_field and not documents:
            raise ConfigError(f"data.json_field: {self.json_field!r} names a key of .json files, and data.files holds "
                              "none (JSON lines hold one record per line, without a key); remove data.json_field")
        if self.csv_delimiter != "," and "csv" not in formats:
            raise ConfigError(f"data.csv_delimiter: {self.csv_delimiter!r} applies to CSV files, and data.files holds "
                              f"none ({', '.join(sorted(formats))}); remove data.csv_delimiter")
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "val_files", val)


@dataclass(frozen=True)
class FileUnit:
    """File ``path`` (named ``key`` for the split), in format ``fmt``; ``keep``: its records all
    (``"all"``) or only those of split ``"train"`` / ``"val"`` (a single file split by record)."""

    path: str
    key: str
    fmt: str
    keep: str = "all"


def _unit_hash(key: str) -> float:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def require_datasets() -> Any:
    """The ``datasets`` module, or one line naming the extra to install; its file readers' own
    error lines are held back (:class:`_RaisedAnyway`)."""
    from deepseek.extras import check_version

    check_version("datasets", where="data.name: the 'hf' dataset")
    try:
        import datasets
    except ImportError:
        raise UsageError(f"data.name: the 'hf' dataset needs the Hugging Face datasets library; {INSTALL_HF}") from None
    for fmt in ("json.json", "csv.csv", "parquet.parquet", "text.text"):
        reader_log = logging.getLogger(f"datasets.packaged_modules.{fmt}")
        if not any(isinstance(f, _RaisedAnyway) for f in reader_log.filters):
            reader_log.addFilter(_RaisedAnyway())
    return datasets


class _RaisedAnyway(logging.Filter):
    """Drops the line a ``datasets`` file reader logs just before it raises ("Failed to load JSON
    from file ..."): the reader turns that exception into its own one-line error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Failed to load JSON from file", "Failed to read file",
                                                   "Failed to read schema from"))


def _unreadable_record(unit: FileUnit, records_read: int, exc: BaseException) -> str:
    """The line for a file the reader fails on after ``records_read`` records. datasets parses a
    file in blocks and yields a block's records only once it is parsed, so its row number
    (from 0) counts from the first record not yet read: in JSON lines, the file's line
    ``records_read + row + 1``."""
    message = _first_line(exc)
    row = re.search(r"\bin row (\d+)\b", message)
    if row is not None and unit.fmt == "json" and is_json_lines(unit.path):
        where = f"at line {records_read + int(row.group(1)) + 1}"
    elif records_read == 0:
        where = "in its first block of records"
    else:
        where = f"after its first {records_read} records"
    fix = ("save it as UTF-8" if isinstance(exc, UnicodeDecodeError) or "codec can't decode" in message
           else "fix the file")
    return f"data.files: cannot read {unit.path!r} {where} (the reader says: {message}); {fix}"


def _parquet_without_rows(unit: FileUnit) -> bool:
    """Whether ``unit`` is a Parquet file of no rows, which datasets' streaming reader fails on
    ("BatchSize must be greater than 0") although it is an empty file like any other."""
    if unit.fmt != "parquet":
        return False
    import pyarrow.parquet as pq  # datasets' own dependency

    try:
        return pq.ParquetFile(unit.path).metadata.num_rows == 0
    except Exception:  # noqa: BLE001 - an unreadable file is the reader's to report, in its words
        return False


class RecordReader(DocReader):
    """Records of files, streamed: one file open at a time, read forward (a step back reopens it)."""

    def __init__(self, tokenizer: Tokenizer, options: HFOptions) -> None:
        self.tokenizer, self.text_field, self.val_fraction = tokenizer, options.text_field, options.val_fraction
        self.reading = {"text": {"sample_by": "paragraph"}, "csv": {"sep": options.csv_delimiter}}
        """Keyword arguments of ``datasets.load_dataset`` per format."""
        self.json_field = options.json_field
        self.bytes = isinstance(tokenizer, ByteTokenizer)
        self._unit: FileUnit | None = None
        self._records: Any = None
        self._next = 0

    def _open(self, unit: FileUnit) -> None:
        datasets = require_datasets()
        extra = self.reading.get(unit.fmt, {})
        if unit.fmt == "json" and self.json_field and not is_json_lines(unit.path):
            extra = {"field": self.json_field}
        try:
            if os.path.getsize(unit.path) == 0 or _parquet_without_rows(unit):
                self._records = iter(())  # no records (datasets cannot open an empty file)
            else:
                ds = datasets.load_dataset(unit.fmt, data_files=[unit.path], split="train", streaming=True, **extra)
                self._records = iter(ds)
        except Exception as exc:  # noqa: BLE001 - the library's errors for unreadable files vary
            raise UsageError(f"data.files: cannot read {unit.path!r} as {unit.fmt} ({_first_line(exc)}); check the "
                             "file or set data.format") from None
        self._unit, self._next = unit, 0

    def _record(self) -> dict[str, Any] | None:
        assert self._unit is not None
        try:
            record = next(self._records)
        except StopIteration:
            return None
        except Exception as exc:  # noqa: BLE001
            raise UsageError(_unreadable_record(self._unit, self._next, exc)) from None
        self._next += 1
        return record

    def doc(self, unit: FileUnit, index: int) -> np.ndarray | None:
        if self._unit != unit or index < self._next:
            self._open(unit)
        while self._next < index:
            if self._record() is None:
                return None
        record = self._record()
        if record is None:
            return None
        text = self._text(record, unit, index)
        if not text or not self._kept(unit, index):
            return np.zeros(0, dtype=np.uint8 if self.bytes else np.int32)
        if self.bytes:
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        return np.asarray(self.tokenizer.encode(text), dtype=np.int32)

    def _kept(self, unit: FileUnit, index: int) -> bool:
        if unit.keep == "all":
            return True
        return (_unit_hash(f"{unit.key}#{index}") < self.val_fraction) == (unit.keep == "val")

    def _text(self, record: dict[str, Any], unit: FileUnit, index: int) -> str | None:
        field_name = self.text_field
        if field_name not in record:
            columns = sorted(map(str, record))
            ext = extension_format(unit.path)
            read_as = f" (read as {unit.fmt} by data.format; its extension says {ext})" if ext not in (None, unit.fmt) else ""
            raise UsageError(f"data.text_field: {unit.path!r}{read_as} has no column {field_name!r}"
                             f"{_layout_hint(record, columns, unit) or did_you_mean(field_name, columns)}; its "
                             f"columns: {', '.join(columns) or 'none'}")
        value = record[field_name]
        if value is not None and not isinstance(value, str):
            raise UsageError(f"data.text_field: record {index} of {unit.path!r} holds {type(value).__name__} "
                             f"{_short(value)} in column {field_name!r}, expected text; name a text column")
        return value


def _layout_hint(record: dict[str, Any], columns: list[str], unit: FileUnit) -> str:
    """A hint for files read with the wrong layout: a CSV whose header holds tabs (another
    delimiter), a JSON object whose records sit under one key."""
    if unit.fmt == "csv" and len(columns) == 1 and "\t" in columns[0]:
        return ' (its header is split by tabs: set data.csv_delimiter = "\\t")'
    nested = [c for c in columns if isinstance(record.get(c), list) and record[c] and isinstance(record[c][0], dict)]
    if unit.fmt == "json" and nested:
        return f' (its records seem to be under {nested[0]!r}: set data.json_field = "{nested[0]}")'
    return ""


class FileSource(DocSource):
    """The files of :class:`HFOptions` as units, split into train and validation."""

    def __init__(self, options: HFOptions, tokenizer: Tokenizer) -> None:
        self.options, self.tokenizer = options, tokenizer
        self._splits = self._split()
        plain_text = [p for p in (*options.files, *options.val_files)
                      if format_of(p, options.format) == "text" and not p.lower().endswith(COMPRESSED)]
        check_files(plain_text, utf8=True, files=HF_TEXT)  # before training, not when the reader gets there

    def _split(self) -> dict[str, list[FileUnit]]:
        o = self.options
        paths = [*o.files, *o.val_files]
        root = os.path.commonpath([os.path.dirname(p) for p in paths])

        def unit(p: str, keep: str = "all") -> FileUnit:
            return FileUnit(p, Path(p).relative_to(root).as_posix(), format_of(p, o.format), keep)

        if o.val_files:
            return {"train": [unit(p) for p in o.files], "val": [unit(p) for p in o.val_files]}
        if len(o.files) == 1:
            return {"train": [unit(o.files[0], "train")], "val": [unit(o.files[0], "val")] if o.val_fraction else []}
        units = [unit(p) for p in o.files]
        is_val = [_unit_hash(u.key) < o.val_fraction for u in units]
        val = [u for u, v in zip(units, is_val, strict=True) if v]
        train = [u for u, v in zip(units, is_val, strict=True) if not v]
        if o.val_fraction > 0 and (not val or not train):
            train, val = units[:-1], units[-1:]
        return {"train": train, "val": val}

    def units(self, split: str) -> list[FileUnit]:
        units = self._splits[split]
        if not units:
            raise UsageError(f"data: the {split} split has no files; set data.val_files, or a data.val_fraction "
                             "above 0 with more files")
        return units

    def describe(self, split: str) -> str:
        names = [Path(u.path).name for u in self._splits[split]]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        units = self._splits[split]
        if len(units) == 1 and units[0].keep == "val":  # one file, its records split by hash
            shown = (f"the records of {shown} that data.val_fraction = {self.options.val_fraction} holds out: few "
                     "records may give none; raise it, or set data.val_files")
        return f"the {'training' if split == 'train' else 'validation'} split ({shown})"

    def reader(self) -> DocReader:
        return RecordReader(self.tokenizer, self.options)

    def fingerprint(self, split: str) -> str:
        h = hashlib.blake2b(digest_size=8)
        o = self.options
        reading = "" if (o.csv_delimiter, o.json_field) == (",", "") else f"\0{o.csv_delimiter}\0{o.json_field}"
        h.update(f"{o.text_field}\0{o.val_fraction}{reading}\n".encode())  # the defaults keep older runs' print
        for u in self._splits[split]:
            h.update(f"{u.key}\0{u.fmt}\0{u.keep}\0{os.path.getsize(u.path)}\n".encode())
        return h.hexdigest()


class HFDataset(TokenDataset):
    """Packed token rows of local files read by Hugging Face ``datasets`` (see the module)."""

    Options = HFOptions

    def __init__(self, options: HFOptions, *, batch_size: int, seed: int) -> None:
        super().__init__(options, batch_size=batch_size, seed=seed)
        self.loader.probe("train")  # the text column, its values and the split's text: before training

    def open_source(self, tokenizer: Tokenizer) -> DocSource:
        return FileSource(self.options, tokenizer)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
