"""A damaged exported file, read back by ``load_exported`` or ``read_metadata``: missing, not the
format, its ``deepseek.json`` record not a JSON object, a FIFO or folder in its place, an ONNX
model's ``NAME.data`` weights file missing, truncated or a FIFO: one UsageError line naming it.
(Split out of test_optimize_export.py, which keeps the round trips and the commands.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepseek.errors import UsageError
from deepseek.graph.export import load_exported, read_metadata


def test_load_exported_rejects_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_exported(tmp_path / "nope.pt2")
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="not a loadable"):
        load_exported(bad)


def test_read_metadata_refuses_onnx_missing_and_corrupt_files_in_one_line(tmp_path: Path) -> None:
    # an outside author called read_metadata on the .onnx file deepseek export wrote and got BadZipFile's traceback
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"an onnx protobuf")
    with pytest.raises(UsageError, match=r"^read_metadata: .*model\.onnx is an ONNX file, which carries no "
                                         r"deepseek\.json record \(only \.pt2 files do\)"):
        read_metadata(onnx)
    with pytest.raises(UsageError, match=r"^read_metadata: .*nope\.pt2 does not exist"):
        read_metadata(tmp_path / "nope.pt2")
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match=r"^read_metadata: .*bad\.pt2: not a loadable torch\.export \(\.pt2\) file"):
        read_metadata(bad)


class _AddOne(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


@pytest.mark.parametrize(("record", "why"), [
    ("{not json", "is not JSON (Expecting property name enclosed in double quotes"),
    ("[" * 100_000, "is not JSON (nested deeper than 64 levels"),
    ("[1, 2]", "is not a JSON object (a list), which deepseek export writes"),
    ("NaN", "is not a JSON object (a float), which deepseek export writes"),
], ids=["malformed", "nested past the stack", "a list", "NaN"])
def test_read_metadata_refuses_a_record_that_is_not_a_json_object(tmp_path: Path, record: str, why: str) -> None:
    """A ``.pt2`` whose ``deepseek.json`` record another tool wrote (or someone edited): a
    JSONDecodeError traceback, or a list or a float returned where the caller indexes a dict."""
    path = tmp_path / "other.pt2"
    program = torch.export.export(_AddOne(), (torch.randn(2),))
    torch.export.save(program, str(path), extra_files={"deepseek.json": record})
    with pytest.raises(UsageError) as caught:
        read_metadata(path)
    assert str(caught.value).startswith(f"read_metadata: {path}: its deepseek.json record {why}")
    assert str(caught.value).endswith("; export the model again (deepseek export)")
    assert "\n" not in str(caught.value)


def test_read_metadata_and_load_exported_say_a_fifo_or_folder_is_not_a_file(tmp_path: Path) -> None:
    """They said 'does not exist' of a folder or FIFO the user could see."""
    import os

    os.mkfifo(tmp_path / "fifo.pt2")
    (tmp_path / "dir.pt2").mkdir()
    for name in ("fifo.pt2", "dir.pt2"):
        for fn in (read_metadata, load_exported):
            with pytest.raises(UsageError, match=rf"^{fn.__name__}: .*{name} is not a file \(a folder, FIFO, device "
                                                 r"or socket\); export a model first"):
                fn(tmp_path / name)


@pytest.mark.parametrize("damage", ["missing", "truncated", "fifo", "model not onnx"])
def test_load_exported_refuses_an_onnx_file_or_its_data_file_damaged_in_one_line(tmp_path: Path, damage: str) -> None:
    """An ONNX model whose weights are in the ``NAME.data`` file beside it (as an export over 2 GB
    writes it) copied without that file, with it cut short or a FIFO in its place, or a model file
    that is no ONNX: onnxruntime's exception (and its own error log line on stderr) reached the
    caller; now one UsageError line naming the file and onnxruntime's reason."""
    for package in ("onnx", "onnxruntime"):
        pytest.importorskip(package)
    import os

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4,), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path, data = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    onnx.save(model, str(path), save_as_external_data=True, location=data.name, size_threshold=0)
    assert load_exported(path)(torch.zeros(4)).tolist() == [1.0] * 4
    data.unlink()
    if damage == "truncated":
        data.write_bytes(b"12")
    elif damage == "fifo":
        os.mkfifo(data)
    elif damage == "model not onnx":
        path.write_bytes(b"not an onnx protobuf")
    reason = {"missing": f'External data path does not exist: "{data}"',
              "truncated": "size to read: 16 given file_length: 2 are out of bounds or can not be read in full",
              "fifo": "Random-access reads require a regular file",
              "model not onnx": "Protobuf parsing failed"}[damage]
    with pytest.raises(UsageError) as caught:
        load_exported(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: not a loadable ONNX file (") and reason in line, line
    assert line.endswith("); export the model again (deepseek export), keeping the NAME.data file it writes beside "
                         "a model over 2 GB") and "\n" not in line

