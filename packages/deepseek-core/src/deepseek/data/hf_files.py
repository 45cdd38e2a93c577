"""The files of the ``hf`` dataset: ``data.files`` / ``data.val_files`` (paths, globs,
``Dataset.save_to_disk`` folders) expanded to the files they name, and the ``datasets`` format of
each file (from ``data.format`` or its extension, before a compression's).

Reading the records of those files is :mod:`deepseek.data.hf`'s.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from deepseek.errors import ConfigError
from deepseek.parsing import loads_json, read_text

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text",
           ".arrow": "arrow"}
COMPRESSED = (".gz", ".bz2", ".xz")
"""Compressions ``datasets`` reads while streaming; the format is the extension before them."""


def _saved_dataset(folder: Path, pattern: str, where: str) -> list[str]:
    """The Arrow files of a ``Dataset.save_to_disk`` folder, in their order; any other folder is
    one line saying what to give instead."""
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file()) or ["train"]
        val = next((s for s in ("validation", "valid", "test") if s in splits), None)
        train = "train" if "train" in splits else next((s for s in splits if s != val), splits[0])
        hint = f"data.files = [\"{pattern}/{train}\"]"
        if val:
            hint += f", data.val_files = [\"{pattern}/{val}\"]"
        raise ConfigError(f"{where}: {pattern!r} is a DatasetDict saved with save_to_disk (splits: "
                          f"{', '.join(splits)}); name its splits' folders: {hint}")
    try:
        state = loads_json(read_text(folder / "state.json"))
        files = [folder / str(f["filename"]) for f in state["_data_files"]]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{where}: {pattern!r} is a folder; name its files with a glob such as "
                          f"\"{pattern.rstrip('/')}/**/*.jsonl\", or give a folder written by Dataset.save_to_disk"
                          ) from None
    if not files:  # save_to_disk of a dataset of no rows writes no Arrow file
        raise ConfigError(f"{where}: {pattern!r} is a dataset saved with save_to_disk that holds no records (its "
                          "state.json lists no Arrow file); save a dataset with records")
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise ConfigError(f"{where}: {pattern!r} (saved with save_to_disk) lacks {absent[0].name}; save the "
                          "dataset again")
    return [str(f) for f in files]


def expand_files(patterns: Sequence[str], where: str) -> tuple[str, ...]:
    """Absolute paths of the files ``patterns`` name (sorted, each once); a ``save_to_disk``
    folder names its Arrow files."""
    found: dict[str, None] = {}
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}: expected file paths or globs, got {pattern!r}")
        matches: list[str] = []
        for p in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
            if os.path.isfile(p):
                matches.append(p)
            elif os.path.isdir(p) and not glob.has_magic(pattern):
                matches += _saved_dataset(Path(p), pattern, where)
        if not matches:
            raise ConfigError(f"{where}: {pattern!r} matches no files; give local files (paths or globs such as "
                              "\"data/*.jsonl\")")
        found.update((str(Path(p).resolve()), None) for p in matches)
    return tuple(sorted(found))


def format_of(path: str, given: str) -> str:
    """The ``datasets`` builder of ``path``: ``given``, else from its extension (before a
    compression's: ``.jsonl.gz`` is JSON lines)."""
    if given:
        return given
    name = Path(path)
    if name.suffix.lower() in COMPRESSED:
        name = name.with_suffix("")
    fmt = FORMATS.get(name.suffix.lower())
    if fmt is None:
        raise ConfigError(f"data.format: cannot tell the format of {path!r} from its extension; set data.format "
                          f"to one of json, parquet, csv, text, arrow (extensions: {', '.join(FORMATS)}, "
                          f"optionally followed by {', '.join(COMPRESSED)})")
    return fmt


def extension_format(path: str) -> str | None:
    """The format ``path``'s extension names, or None."""
    try:
        return format_of(path, "")
    except ConfigError:
        return None


def is_json_lines(path: str) -> bool:
    """Whether ``path`` is JSON lines by its extension (``.jsonl``, before a compression's)."""
    name = Path(path)
    if name.suffix.lower() in COMPRESSED:
        name = name.with_suffix("")
    return name.suffix.lower() == ".jsonl"
