"""``deepseek compare`` and ``compress`` hold their data to the run tokenizer they checked, as
``deepseek eval`` does (tests/ecosystem/test_tokenizer.py): each checked the run folder's
``tokenizer.json`` against the checkpoint's record (``read_source``), then built its dataset,
which read the file again by path: a file replaced in between was used unchecked (exit 0). Now the
identity the dataset parsed is held to the record (``weights_source.check_data_tokenizer``).

The BPE parser (``tokenizers``) is not in this environment, so the data is a plugin dataset that
reads its ``data.tokenizer`` file by path, keeps it in the run folder and records its identity in
its data position, as core's text data does (tests/core/_tokfile.py, shared with core's serving
test); the commands' own code is what runs. ``multimodal eval`` (report.py) reads multimodal.classifier runs only, and a study's runs are
built from the study's config, whose data names no run folder's copy: the same call guards both,
not exercised here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _core_tests import core_test_module
from _hosts import enterprise_host
from _inprocess import deepseek_here

from deepseek import hookimpl
from deepseek.data.tokenizer import TOKENIZER_FILE
from deepseek.plugins.host import PluginHost

tokfile = core_test_module("_tokfile")


@dataclass(frozen=True)
class ByteRowsOptions(tokfile.TokFileOptions):
    seq_len: int = 8


class ByteRows(tokfile.TokFile):
    """Seeded byte-token rows of ``seq_len`` tokens."""

    Options = ByteRowsOptions

    def rows(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, 256, (self.batch_size, self.options.seq_len + 1), generator=generator)
        return {"input_ids": ids[:, :-1], "targets": ids[:, 1:]}


class Acme:
    @hookimpl
    def deepseek_register_datasets(self, register):  # type: ignore[no-untyped-def]  # noqa: ANN001
        register("acme.tokfile", ByteRows, description="byte rows under a tokenizer file's identity")


CONFIG = """
[model]
name = "tiny"
d_model = 16
n_heads = 2
n_layers = 1
d_ff = 32
max_seq_len = 8
[data]
name = "acme.tokfile"
tokenizer = "tok/tokenizer.json"
batch_size = 4
eval_batches = 2
[train]
max_steps = 2
warmup_steps = 0
eval_interval = 0
[strategy]
name = "single"
device = "cpu"
[logging]
plot = false
progress = false
"""


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return enterprise_host((Acme(), "deepseek-acme"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, host: PluginHost) -> Path:
    """Runs ``a`` and ``b`` (2 steps each) of the plugin data under one tokenizer file."""
    work = tmp_path_factory.mktemp("held")
    (work / "tok").mkdir()
    (work / "tok" / TOKENIZER_FILE).write_text('{"model": {"vocab": {"a": 0}}}')
    (work / "c.toml").write_text(CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("a", "b"):
            code, err, _ = deepseek_here(mp, work, "train", "c.toml", "--run-dir", name, host=host)
            assert code == 0, err
    return work


def _replaced_after_first_read(copy: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes, list[Path]]:
    """``copy`` (a run's tokenizer.json) replaced on disk right after its first read; its own
    bytes, the replacement's, and each read of it."""
    import deepseek.parsing

    own = copy.read_bytes()
    other = b'{"model": {"vocab": {"b": 0}}}'
    real, reads = deepseek.parsing.read_file, []

    def read_file(path: Any, *args: Any, **kwargs: Any) -> bytes:
        data = real(path, *args, **kwargs)
        if Path(path).resolve() == copy:
            reads.append(copy)
            if len(reads) == 1:
                copy.write_bytes(other)
        return data

    monkeypatch.setattr(deepseek.parsing, "read_file", read_file)
    return own, other, reads


def _line(copy: Path, own: bytes, other: bytes) -> str:
    from deepseek.data.bpe import file_digest

    return (f"error: {copy}: is not the tokenizer this run was trained with (the data read it as "
            f"bpe:{file_digest(other)}, after its check: it was replaced meanwhile, the checkpoint recorded "
            f"bpe:{file_digest(own)}); put back the run's own tokenizer.json (token ids would mean other text)")


@pytest.mark.parametrize("command", [
    ("compare", "a", "b", "--resamples", "100", "--latency-runs", "0", "--json", "-"),
    ("compress", "--checkpoint", "a", "--method", "prune.ffn", "--set", "ratio=0.5", "--out", "out",
     "--latency-runs", "0"),
])
def test_a_command_holds_its_data_to_the_run_tokenizer_it_checked(work: Path, host: PluginHost,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  command: tuple[str, ...]) -> None:
    copy = work / "a" / TOKENIZER_FILE
    own, other, reads = _replaced_after_first_read(copy, monkeypatch)
    try:
        code, err, out = deepseek_here(monkeypatch, work, *command, host=host)
        assert len(reads) >= 2 and copy.read_bytes() == other, err  # replaced after the check read it, read again
        assert (code, err, out) == (2, _line(Path("a", TOKENIZER_FILE), own, other), ""), err
        assert not (work / "out").exists()
    finally:
        copy.write_bytes(own)
    if command[0] == "compare":  # the run's own file again: compared
        code, err, out = deepseek_here(monkeypatch, work, *command, host=host)
        assert code == 0, err
        assert json.loads(out)["runs"]["A"]["step"] == 2
