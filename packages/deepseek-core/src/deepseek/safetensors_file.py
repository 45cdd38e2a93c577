"""A safetensors file read through one descriptor: the one way the framework reads one.

safetensors' ``safe_open`` takes a path and opens it itself (its ``_safe_open_handle`` too: it
reopens the handle's ``name``), so a check of the path before it (``is_file``) is of some other
file than the one read: a FIFO put in its place between the two blocked the command inside Rust
for good, and a folder read as a corrupt file (``No such device (os error 19)``).
:func:`open_safetensors` opens the path once through :func:`deepseek.parsing.open_file` (a
regular file, or the refusal says what is there) and reads everything from that descriptor:

- the header: 8 bytes of its length (little-endian), then that many bytes of JSON, at most
  :data:`MAX_HEADER_BYTES`, each tensor's ``dtype``, ``shape`` and ``data_offsets`` checked as
  safetensors checks them (a known dtype; offsets that follow one another from 0, each range
  exactly the bytes its shape and dtype take, the last ending at the file's end), and the
  ``__metadata__`` table of strings;
- a tensor: a view of a private (copy-on-write) mapping of that descriptor, as safetensors'
  own ``safe_open`` gives: the pages stay the file's (the page cache, given back under memory
  pressure) until the tensor is written, so loading a checkpoint into a model costs no second
  copy of its weights in the process's own memory. A file already cut short when a tensor is
  asked for is a :class:`SafetensorsFormatError`; one cut short while its mapping is read ends
  the process with ``SIGBUS``, as with safetensors' own reader.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.parsing import loads_json, open_file

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 100_000_000
"""The largest header read (safetensors' own limit): a length beyond it is a damaged file."""

DTYPES = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E8M0": ("float8_e8m0fnu", 1), "I16": ("int16", 2), "U16": ("uint16", 2),
    "F16": ("float16", 2), "BF16": ("bfloat16", 2), "I32": ("int32", 4), "U32": ("uint32", 4), "F32": ("float32", 4),
    "F64": ("float64", 8), "I64": ("int64", 8), "U64": ("uint64", 8), "C64": ("complex64", 8),
}
"""safetensors' dtype names -> (the name of the torch dtype each is read as, bytes per element)."""


class SafetensorsFormatError(ValueError):
    """The file's bytes are not a safetensors file (or no longer: cut short while read); its text
    is what is wrong, without the path (callers name it)."""


class SafetensorsFile:
    """An open safetensors file (:func:`open_safetensors`): its tensor names, shapes and metadata
    from the header, each tensor read when asked for."""

    def __init__(self, fh: Any, header_end: int, header: dict[str, Any]) -> None:
        self._fh = fh
        self._map: mmap.mmap | None = None
        meta = header.pop("__metadata__", None)
        self._metadata: dict[str, str] = dict(meta or {})
        self._data_start = header_end
        self._entries = header

    def keys(self) -> list[str]:
        """The tensors' names, sorted."""
        return sorted(self._entries)

    def metadata(self) -> dict[str, str]:
        """The header's ``__metadata__`` (empty when it has none)."""
        return dict(self._metadata)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor ``name`` (``KeyError`` for a name the file lacks), from the header."""
        return tuple(self._entries[name]["shape"])

    def get_tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` as a CPU tensor on a private mapping of the file (module docstring;
        ``KeyError`` for a name the file lacks). It outlives the ``with`` block of
        :func:`open_safetensors`: the mapping stays while a tensor on it does."""
        import torch

        entry = self._entries[name]
        dtype = _torch_dtype(entry["dtype"])
        begin, end = entry["data_offsets"]
        if end == begin:
            return torch.empty(entry["shape"], dtype=dtype)
        fd = self._fh.fileno()
        size = os.fstat(fd).st_size
        if size < self._data_start + end:
            raise SafetensorsFormatError(f"the file ends at byte {size:,}, inside a tensor's data (cut short since "
                                         "it was opened)")
        if self._map is None:
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)  # private: a tensor written never writes the file
        flat = torch.frombuffer(self._map, dtype=torch.uint8, count=end - begin, offset=self._data_start + begin)
        return flat.view(dtype).view(entry["shape"])  # holds the mapping (frombuffer keeps its buffer)


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    found = getattr(torch, DTYPES[name][0], None)  # float8_e8m0fnu: torch 2.7 on
    if found is None:
        raise SafetensorsFormatError(f"dtype {name} is not one this torch {torch.__version__} reads")
    return found


@contextlib.contextmanager
def open_safetensors(path: str | os.PathLike[str]) -> Iterator[SafetensorsFile]:
    """The safetensors file ``path`` (a link to one too), its header read and checked (module
    docstring). A missing file raises ``FileNotFoundError``, a folder ``IsADirectoryError``, a
    FIFO, device or socket :class:`deepseek.parsing.UnreadableFile` (all ``OSError``: none waited
    on); bytes that are no safetensors file :class:`SafetensorsFormatError` (a ``ValueError``)."""
    with open_file(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        length = int.from_bytes(fh.read(8), "little") if size >= 8 else -1
        if length < 0:
            raise SafetensorsFormatError(f"{size} bytes, too short for a safetensors header")
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise SafetensorsFormatError(f"its header length {length:,} runs past the file's {size:,} bytes"
                                         if length <= MAX_HEADER_BYTES else
                                         f"its header length {length:,} is more than safetensors allows")
        raw = fh.read(length)
        if len(raw) != length:
            raise SafetensorsFormatError("the file ends inside its header (cut short since it was opened)")
        yield SafetensorsFile(fh, 8 + length, _checked_header(raw, size - 8 - length))


def _checked_header(raw: bytes, data_bytes: int) -> dict[str, Any]:
    """The parsed header ``raw`` of a file with ``data_bytes`` after it, checked (module docstring)."""
    try:
        header = loads_json(raw.decode("utf-8")) if raw[:1] == b"{" else None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SafetensorsFormatError(f"its header is not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError("its header is not a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise SafetensorsFormatError("its __metadata__ is not a table of strings")
    spans = []
    for name, entry in header.items():
        if name != "__metadata__":
            spans.append((*_span(name, entry), name))
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise SafetensorsFormatError(f"tensor {name!r} starts at byte {begin:,} of the data, where "
                                         f"{at:,} follows the tensor before it")
        at = end
    if at != data_bytes:
        raise SafetensorsFormatError(f"its tensors take {at:,} bytes of data, the file holds {data_bytes:,}")
    return header


def _span(name: str, entry: Any) -> tuple[int, int]:
    """``entry``'s ``data_offsets``, once its dtype, shape and offsets are found to fit each other."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    dtype = entry.get("dtype") if isinstance(entry, dict) else None
    shape = entry.get("shape") if isinstance(entry, dict) else None
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if dtype not in DTYPES:
        raise SafetensorsFormatError(f"tensor {name!r} has dtype {dtype!r}, not one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(whole(n) for n in shape):
        raise SafetensorsFormatError(f"tensor {name!r} has shape {shape!r}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(whole(n) for n in offsets)
            and offsets[0] <= offsets[1]):
        raise SafetensorsFormatError(f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end]")
    itemsize = DTYPES[dtype][1]
    if offsets[1] - offsets[0] != prod(shape) * itemsize:
        raise SafetensorsFormatError(f"tensor {name!r} of shape {shape} and dtype {dtype} takes "
                                     f"{prod(shape) * itemsize:,} bytes, its data_offsets give {offsets[1] - offsets[0]:,}")
    return offsets[0], offsets[1]


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of the safetensors file ``path`` (:func:`open_safetensors`)."""
    with open_safetensors(Path(path)) as fh:
        return {key: fh.get_tensor(key) for key in fh.keys()}, fh.metadata()
