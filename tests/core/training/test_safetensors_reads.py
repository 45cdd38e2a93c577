"""``deepseek.safetensors_file``, the one reader of a safetensors file (checkpoint weights and
optimizer state, exported weights, an imported GPT-2 folder): opened once and read through that
descriptor, so a FIFO put in the place of a file already checked is refused or read as the file it
was, never waited on (safetensors' ``safe_open`` opens the path itself and blocked inside Rust).
It reads what safetensors writes, and refuses the damaged files safetensors refuses."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from deepseek.errors import CheckpointError, UsageError
from deepseek.interop.hf_import import _read_tensors, _source_files
from deepseek.safetensors_file import SafetensorsFormatError, open_safetensors, read_safetensors
from deepseek.training.checkpoint import check_weights_fit, read_weights_metadata
from deepseek.training.checkpoint_io import check_tensors, load_tensors
from deepseek.training.checkpoint_optimizer import check_resumed_groups

TENSORS = {
    "w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "scalar": torch.tensor(7), "empty": torch.zeros(0, 5),
    "half": torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "mask": torch.tensor([True, False, True]),
    "f8": torch.tensor([0.5, 1.0], dtype=torch.float8_e4m3fn), "u16": torch.tensor([1, 65535], dtype=torch.uint16),
}


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def _weights(path: Path) -> Path:
    save_file(TENSORS, str(path), {"model": "{}", "step": "3"})
    return path


def test_it_reads_what_safetensors_wrote(tmp_path: Path) -> None:
    path = _weights(tmp_path / "w.safetensors")
    tensors, meta = read_safetensors(path)
    with safe_open(str(path), framework="pt") as theirs:
        assert meta == theirs.metadata() == {"model": "{}", "step": "3"}
        assert sorted(tensors) == sorted(theirs.keys()) == sorted(TENSORS)
        for key, ours in tensors.items():
            want = theirs.get_tensor(key)
            assert (ours.dtype, ours.shape) == (want.dtype, want.shape), key
            assert torch.equal(_bytes(ours), _bytes(want)), key
    with open_safetensors(path) as fh:
        assert fh.shape("w") == (3, 4) and fh.shape("scalar") == ()


def _pack(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def _header(blob: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def damage(blob: bytes) -> bytes:
        header, data = _header(blob)
        change(header)
        return _pack(header, data)
    return damage


DAMAGE = {
    "empty": lambda b: b"",
    "cut in the length": lambda b: b[:5],
    "cut in the header": lambda b: b[:40],
    "cut in the data": lambda b: b[:-1],
    "grown": lambda b: b + b"\0",
    "a header length past the end": lambda b: (len(b) * 2).to_bytes(8, "little") + b[8:],
    "a header of no JSON": lambda b: b[:8] + b"[" * int.from_bytes(b[:8], "little") + _header(b)[1],
    "an unknown dtype": _edit(lambda h: h["w"].update(dtype="F7")),
    "a shape its bytes do not fit": _edit(lambda h: h["w"].update(shape=[4, 4])),
    "overlapping tensors": _edit(lambda h: h["w"].update(data_offsets=[h["w"]["data_offsets"][0] - 2,
                                                                       h["w"]["data_offsets"][1] - 2])),
    "metadata of no strings": _edit(lambda h: h.update(__metadata__={"step": 3})),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_file_is_refused_as_safetensors_refuses_it(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    path = _weights(tmp_path / "w.safetensors")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises((SafetensorError, OSError)):  # safetensors' own verdict on the same bytes
        with safe_open(str(path), framework="pt") as fh:
            fh.metadata()
    with pytest.raises(SafetensorsFormatError):
        read_safetensors(path)


READS: dict[str, Callable[[Path], Any]] = {
    "load_tensors": lambda p: load_tensors(p, "model weights")[0],
    "check_tensors": lambda p: check_tensors(p, "model weights"),
    "read_weights_metadata": read_weights_metadata,
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_a_weights_file_swapped_for_a_fifo_after_its_check_is_not_waited_on(
        tmp_path: Path, read: Callable[[Path], Any], fifo_after_is_file: Callable[[Path], None],
        past_fifo: Callable[..., Any]) -> None:
    path = _weights(tmp_path / "model.safetensors")
    want = read(path)
    fifo_after_is_file(path)
    try:  # the file as it was when opened, or refused naming what is there now
        got = past_fifo(path, lambda: read(path))
    except CheckpointError as exc:
        assert str(exc).startswith(f"{path}: ") and "is not a regular file (a FIFO, device or socket)" in str(exc)
    else:
        assert got.keys() == want.keys() if isinstance(want, dict) else got == want


@pytest.mark.parametrize(("make", "there"), [(os.mkfifo, "is not a regular file (a FIFO, device or socket)"),
                                             (os.mkdir, "is a folder")], ids=["a FIFO", "a folder"])
def test_checkpoint_state_that_is_no_file_is_named_for_what_it_is(
        tmp_path: Path, make: Callable[[Path], None], there: str, past_fifo: Callable[..., Any]) -> None:
    path = tmp_path / "optimizer.safetensors"
    make(path)
    for read in (load_tensors, check_tensors):
        with pytest.raises(CheckpointError) as caught:  # was "optimizer state file is missing" of either
            past_fifo(path, lambda read=read: read(path, "optimizer state"))
        assert str(caught.value).startswith(f"{path}: optimizer state file {there}; the checkpoint is damaged, ")
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: {there}, not a weights file; give a .safetensors file")):
        past_fifo(path, lambda: read_weights_metadata(path))


def test_the_up_front_checks_pass_over_a_fifo_unread(tmp_path: Path, past_fifo: Callable[..., Any]) -> None:
    """check_weights_fit and check_resumed_groups read headers only and leave a file they cannot
    read to the load, whose messages name it: a FIFO there is left so at once."""
    ckpt = tmp_path / "step-3"
    ckpt.mkdir()
    os.mkfifo(ckpt / "model.safetensors")
    assert past_fifo(ckpt / "model.safetensors", lambda: check_weights_fit(torch.nn.Linear(4, 3), ckpt / "model.safetensors")) is None
    (ckpt / "model.safetensors").unlink()
    _weights(ckpt / "model.safetensors")
    optimizer = ckpt / "optimizer.safetensors"
    save_file({"state/w/exp_avg": torch.zeros(3)}, str(optimizer),
              {"param_groups": json.dumps([{"params": ["w"], "lr": 0.1, "weight_decay": 0.0}])})
    with pytest.raises(CheckpointError, match="optimizer groups differ"):  # its metadata read through the reader
        check_resumed_groups(ckpt, [["v"]])
    optimizer.unlink()
    os.mkfifo(optimizer)
    assert past_fifo(optimizer, lambda: check_resumed_groups(ckpt, [["v"]])) is None


def test_a_gpt2_folders_weights_swapped_for_a_fifo_are_refused_unread(
        tmp_path: Path, fifo_after_is_file: Callable[[Path], None], past_fifo: Callable[..., Any]) -> None:
    src = tmp_path / "gpt2"
    src.mkdir()
    (src / "config.json").write_text("{}")
    weights = _weights(src / "model.safetensors")
    fifo_after_is_file(weights)  # right after import-hf's check that the file is there

    def read() -> Any:
        return _read_tensors(_source_files(src)[1])

    with pytest.raises(UsageError, match=re.escape(f"{weights}: is not a regular file (a FIFO, device or socket), not a "
                                                   "safetensors file; save the model again")):
        past_fifo(weights, read)


def _anonymous_mib() -> int:
    """This process's resident memory of its own (not file pages), MiB (Linux)."""
    return int(re.search(r"RssAnon:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) // 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RssAnon from /proc (Linux)")
def test_read_weights_are_the_files_pages_not_a_second_copy_in_the_process(tmp_path: Path) -> None:
    """Loading a checkpoint costs no copy of its weights in the process's own memory (as
    safetensors' own mapping did): 64 MiB read adds well under 64 MiB of anonymous memory, the
    values are the file's, and writing a tensor leaves the file as it was (a private mapping)."""
    path = tmp_path / "w.safetensors"
    save_file({f"w{i}": torch.full((1024, 4096), float(i)) for i in range(4)}, str(path))
    before = _anonymous_mib()
    tensors, _ = read_safetensors(path)
    assert _anonymous_mib() - before < 24  # a copy adds 64
    assert [float(tensors[f"w{i}"][7, 9]) for i in range(4)] == [0.0, 1.0, 2.0, 3.0]
    tensors["w1"].add_(1)
    assert float(read_safetensors(path)[0]["w1"][0, 0]) == 1.0
