"""Shared by the corrupt-state tests (test_hostile_state.py, test_hostile_state_commits.py): the
commands that read a run, and builders of the damage each test does to a copy of a trained run."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEP = Path("checkpoints") / "step-1"
READERS: dict[str, list[str]] = {
    "resume": ["train", "--resume", "run", "--max-steps", "3", "--quiet"],
    "resume elsewhere": ["train", "--resume", "run", "--max-steps", "3", "--quiet", "--run-dir", "new/run"],
    "generate": ["generate", "--checkpoint", "run", "--max-new-tokens", "2", "--device", "cpu"],
    "eval": ["eval", "--checkpoint", "run", "--device", "cpu"],
    "optimize": ["optimize", "--checkpoint", "run", "--seq", "8"],
    "export": ["export", "--checkpoint", "run", "--out", "m.pt2", "--seq", "8"],
}


def _deep_state(run: Path) -> None:
    """An extra field nested 5,000 levels deep (json.dumps itself cannot write it)."""
    path = run / STEP / "trainer.json"
    text = path.read_text().rstrip()
    path.write_text(text[:-1] + ', "extra": ' + "[" * 5000 + "]" * 5000 + "}")


def _edit_state(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def corrupt(run: Path) -> None:
        path = run / STEP / "trainer.json"
        state = json.loads(path.read_text())
        change(state)
        path.write_text(json.dumps(state))
    return corrupt


def _set(**values: Any) -> Callable[[Path], None]:
    return _edit_state(lambda state: state.update(values))


def _drop(key: str) -> Callable[[Path], None]:
    return _edit_state(lambda state: state.pop(key))


def _set_data(**values: Any) -> Callable[[Path], None]:
    return _edit_state(lambda state: state["data"].update(values))


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def corrupt(run: Path) -> None:
        (run / name).write_bytes(data)
    return corrupt


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    def corrupt(run: Path) -> None:
        path = run / name
        path.write_bytes(path.read_bytes()[:keep])
    return corrupt


def _garbage_header(name: str) -> Callable[[Path], None]:
    """A length prefix that fits the file, then bytes that are not the JSON header."""
    def corrupt(run: Path) -> None:
        path = run / name
        size = path.stat().st_size
        path.write_bytes((64).to_bytes(8, "little") + b"{" * 64 + b"\x00" * (size - 72))
    return corrupt


def _edit_tensors(name: str, change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """Rewrite the safetensors file ``name`` (metadata kept) after ``change(tensors)``."""
    def corrupt(run: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        path = run / name
        with safe_open(str(path), framework="pt") as fh:
            meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        change(tensors)
        save_file(tensors, str(path), metadata=meta)
    return corrupt


def _reshape_first(tensors: dict[str, Any]) -> None:
    first = sorted(k for k in tensors if k.endswith("/exp_avg"))[0]
    tensors[first] = tensors[first].new_zeros(3, 5)


def _drop_first_moment(tensors: dict[str, Any]) -> None:
    del tensors[sorted(k for k in tensors if k.endswith("/exp_avg"))[0]]


def _as_integers(tensors: dict[str, Any]) -> None:
    tensors.update({k: v.long() for k, v in tensors.items()})


def _edit_first(key: str, change: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    """Replace the first parameter's optimizer state ``key`` (e.g. ``exp_avg_sq``) by ``change`` of it."""
    def edit(tensors: dict[str, Any]) -> None:
        first = sorted(k for k in tensors if k.endswith(f"/{key}"))[0]
        tensors[first] = change(tensors[first])
    return edit


def _nan_in_first(tensors: dict[str, Any]) -> None:
    first = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[first] = tensors[first].clone().fill_(float("nan"))

TRAINER = str(STEP / "trainer.json")
OPTIMIZER = str(STEP / "optimizer.safetensors")
MODEL = str(STEP / "model.safetensors")


def _agree_commit_record(run: Path) -> None:
    """Rewrite the checkpoint's commit record so it lists the files' sizes as they are now: an
    edit made on purpose, which only the checks on the files' content can catch."""
    record = run / STEP / "commit.json"
    body = json.loads(record.read_text())
    body["files"] = {name: (run / STEP / name).stat().st_size for name in body["files"]}
    body["crc32"] = {name: f"{zlib.crc32((run / STEP / name).read_bytes()):08x}" for name in body["files"]}
    record.write_text(json.dumps(body))
