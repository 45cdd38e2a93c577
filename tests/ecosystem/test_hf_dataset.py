"""The ``hf`` dataset: local JSON lines, Parquet, CSV and text files streamed by Hugging Face
``datasets``, packed like the ``text`` dataset; its position in checkpoints (exact resume);
its splits; hostile files, options and saved states (one line each). Files are written here.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch

datasets = pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

from _eco_cli import refused, run  # noqa: E402

from deepseek.config.load import config_from_dict  # noqa: E402
from deepseek.data.hf import HFDataset  # noqa: E402
from deepseek.errors import UsageError  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.training.build import build_dataset  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "the", "quick", "brown", "fox", "héllo", "naïve"]
SMALL = ["--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2",
         "--set", "model.n_layers=1", "--set", "model.max_seq_len=32", "--set", "data.name=hf",
         "--set", "data.seq_len=16", "--set", "data.batch_size=4", "--set", "data.eval_batches=2",
         "--set", "data.shuffle_buffer=8", "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"",
         "--set", "train.warmup_steps=1", "--set", "train.decay_steps=8", "--set", "checkpoint.interval=3",
         "--precision", "fp32", "--quiet"]


def records(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]


def write(path: Path, texts: list[str], column: str = "text") -> Path:
    """``texts`` as the records of ``path`` in the format its extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": i, column: t}) + "\n" for i, t in enumerate(texts)))
    elif path.suffix == ".parquet":
        pq.write_table(pa.table({"id": list(range(len(texts))), column: texts}), path)
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["id", column])
            w.writerows(enumerate(texts))
    elif path.suffix == ".txt":
        path.write_text("\n\n".join(texts) + "\n")
    return path


def dataset(host: PluginHost, batch_size: int = 4, seed: int = 0, **data: Any) -> HFDataset:
    config = config_from_dict({"data": {"name": "hf", "batch_size": batch_size, **data},
                               "train": {"seed": seed}}, host=host)
    ds = build_dataset(config, host)
    assert isinstance(ds, HFDataset)
    return ds


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".txt"])
def test_each_format_packs_its_records_joined_by_the_separator(host: PluginHost, tmp_path: Path, suffix: str) -> None:
    train = [write(tmp_path / f"train{i}{suffix}", records(40, i)) for i in range(2)]
    val_texts = records(30, 99)
    val = write(tmp_path / f"val{suffix}", val_texts)
    ds = dataset(host, files=[str(p) for p in train], val_files=[str(val)], seq_len=16, shuffle_buffer=8)
    expected = b"\0".join(t.encode() for t in val_texts)
    (x, y), = [(b["input_ids"], b["targets"]) for b in ds.validation_batches(1)]
    assert x.shape == (4, 16) and x.dtype == torch.int64
    assert bytes(x.flatten().tolist()) == expected[:64] and int(y[-1, -1]) == expected[64]
    batch = next(ds)
    assert batch["input_ids"].shape == (4, 16) and torch.equal(batch["input_ids"][:, 1:], batch["targets"][:, :-1])
    assert ds.vocab_size == 256 and ds.count_tokens(batch) == 64


def test_format_option_reads_files_of_any_name(host: PluginHost, tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", records(20, 1)).rename(tmp_path / "a.data")
    b = write(tmp_path / "b.jsonl", records(20, 2)).rename(tmp_path / "b.data")
    ds = dataset(host, files=[str(a)], val_files=[str(b)], format="json", seq_len=8)
    assert next(ds)["input_ids"].shape == (4, 8)


def test_training_stream_covers_every_train_record_once_per_epoch(host: PluginHost, tmp_path: Path) -> None:
    texts = [records(10, i) for i in range(3)]
    files = [write(tmp_path / f"p{i}.jsonl", t) for i, t in enumerate(texts)]
    val = write(tmp_path / "v.jsonl", records(5, 9))
    total = sum(len(t.encode()) + 1 for ts in texts for t in ts)  # every record and its separator
    ds = dataset(host, batch_size=1, files=[str(f) for f in files], val_files=[str(val)], seq_len=total,
                 shuffle_buffer=1)
    epoch = bytes(next(ds)["input_ids"][0].tolist()).split(b"\0")  # the row is exactly one epoch
    assert epoch[-1] == b"" and sorted(epoch[:-1]) == sorted(t.encode() for ts in texts for t in ts)


@pytest.mark.parametrize("tokenizer", [False, True])
def test_resume_is_exact_at_every_step(host: PluginHost, tmp_path: Path, tokenizer: bool) -> None:
    files = [str(write(tmp_path / f"p{i}.jsonl", records(25, i))) for i in range(3)]
    extra: dict[str, Any] = {}
    if tokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer, hf.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
        hf.train_from_iterator(records(200, 5), trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False))
        hf.save(str(tmp_path / "tok.json"))
        extra["tokenizer"] = str(tmp_path / "tok.json")
    options = {"files": files, "seq_len": 8, "shuffle_buffer": 5, "val_fraction": 0.3, **extra}
    straight = dataset(host, seed=7, **options)
    batches = [next(straight)["input_ids"] for _ in range(40)]  # several epochs
    for k in (0, 1, 4, 13, 29):
        first = dataset(host, seed=7, **options)
        for _ in range(k):
            next(first)
        state = json.loads(json.dumps(first.state_dict()))
        again = dataset(host, seed=7, **options)
        again.load_state_dict(state)
        assert all(torch.equal(next(again)["input_ids"], b) for b in batches[k:k + 8]), k
    assert ("tokenizer" in state) == tokenizer and "doc" in state
    if tokenizer:
        assert straight.vocab_size == 300 and max(int(b.max()) for b in batches) < 300


def test_training_resume_gives_the_same_losses(host: PluginHost, tmp_path: Path) -> None:
    files = [str(write(tmp_path / "d" / f"p{i}.parquet", records(30, i))) for i in range(3)]
    data = ["--set", f"data.files={json.dumps(files)}"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(host, "train", *SMALL, *data, "--max-steps", "8", "--run-dir", str(straight))[0] == 0
    assert run(host, "train", *SMALL, *data, "--max-steps", "3", "--run-dir", str(resumed))[0] == 0
    code, _, err = run(host, "train", "--resume", str(resumed), "--max-steps", "8")
    assert code == 0, err

    def losses(r: Path) -> list[float]:
        rows = [json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()]
        return [row["loss"] for row in rows if "loss" in row and row["step"] > 3]

    assert losses(straight) == losses(resumed) and len(losses(straight)) == 5
    state = json.loads((resumed / "checkpoints" / "step-8" / "trainer.json").read_text())["data"]
    assert {"epoch", "cursor", "doc", "offset", "fingerprint"} <= set(state)


def test_one_file_is_split_by_record(host: PluginHost, tmp_path: Path) -> None:
    texts = [f"record number {i}" for i in range(200)]
    f = write(tmp_path / "one.jsonl", texts)
    ds = dataset(host, files=[str(f)], val_fraction=0.2, seq_len=8)
    source = ds.loader.source
    seen: dict[str, list[int]] = {}
    for split in ("train", "val"):
        unit, = source.units(split)
        reader = source.reader()
        seen[split] = [i for i in range(200) if len(reader.doc(unit, i))]  # type: ignore[arg-type]
    assert set(seen["train"]).isdisjoint(seen["val"]) and len(seen["train"]) + len(seen["val"]) == 200
    assert 20 <= len(seen["val"]) <= 60


def test_many_files_are_split_by_file(host: PluginHost, tmp_path: Path) -> None:
    files = [str(write(tmp_path / f"f{i:02d}.jsonl", records(3, i))) for i in range(20)]
    ds = dataset(host, files=files, val_fraction=0.2, seq_len=8)
    train = {u.key for u in ds.loader.source.units("train")}
    val = {u.key for u in ds.loader.source.units("val")}
    assert train.isdisjoint(val) and len(train | val) == 20 and val


@pytest.mark.parametrize(("data", "words"), [
    ({"files": ["nothing-*.jsonl"]}, ["data.files", "matches no files"]),
    ({}, ["data.files", "reads local files"]),
    ({"files": ["x.xyz"]}, ["data.format", "cannot tell the format", "json, parquet, csv, text"]),
    ({"files": ["a.jsonl"], "format": "yaml"}, ["data.format"]),
    ({"files": ["a.jsonl"], "text_field": "txt"}, ["data.text_field", "no column 'txt'", "did you mean 'text'",
                                                   "columns: id, text"]),
    ({"files": ["a.jsonl"], "text_field": "id"}, ["data.text_field", "record 0", "int", "expected text"]),
    ({"files": ["a.jsonl"], "val_files": ["a.jsonl"]}, ["data.val_files", "also in data.files"]),
    ({"files": ["a.jsonl"], "fies": ["a.jsonl"]}, ["data.fies", "did you mean 'files'"]),
    ({"files": ["blank.jsonl"], "val_files": ["a.jsonl"]}, ["no text"]),
    ({"files": ["broken.jsonl"], "val_files": ["a.jsonl"]}, ["data.files", "broken.jsonl' at line 2 ("]),
    ({"files": ["latin1.jsonl"], "val_files": ["a.jsonl"]}, ["latin1.jsonl", "codec can't decode", "save it as UTF-8"]),
    # read with the wrong layout: the fix is the reading key, not a column name
    ({"files": ["tabs.csv"], "val_files": ["a.jsonl"]},
     ["has no column 'text' (its header is split by tabs: set data.csv_delimiter = \"\\t\")"]),
    ({"files": ["nested.json"], "val_files": ["a.jsonl"]},
     ["has no column 'text' (its records seem to be under 'rows': set data.json_field = \"rows\")"]),
])
def test_hostile_data_is_one_line(host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  data: dict[str, Any], words: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.jsonl", records(30, 1))
    write(tmp_path / "blank.jsonl", [""] * 30)
    (tmp_path / "x.xyz").write_text("whatever")
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "café"}\n'.encode("latin-1") * 3)
    (tmp_path / "tabs.csv").write_text("id\ttext\n" + "".join(f"{i}\talpha beta\n" for i in range(30)))
    (tmp_path / "nested.json").write_text(json.dumps({"rows": [{"text": f"alpha {i}"} for i in range(30)]}))
    argv = [f"data.{k}={json.dumps(v)}" for k, v in data.items()]
    line = refused(host, "train", *SMALL, *[a for s in argv for a in ("--set", s)], "--run-dir", str(tmp_path / "r"))
    for w in words:
        assert w in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", [b"PAR1garbagegarbage", b'{"text": "json in a parquet name"}\n'])
def test_an_unreadable_parquet_file_is_our_line_alone(tmp_path: Path, content: bytes) -> None:
    """datasets' Parquet reader logged "Failed to read schema from ..." before our line."""
    import subprocess
    import sys

    write(tmp_path / "a.jsonl", records(30, 1))
    (tmp_path / "bad.parquet").write_bytes(content)
    argv = ["--set", f"data.files={json.dumps([str(tmp_path / 'bad.parquet')])}",
            "--set", f"data.val_files={json.dumps([str(tmp_path / 'a.jsonl')])}"]
    proc = subprocess.run([sys.executable, "-m", "deepseek", "train", *SMALL, *argv, "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr  # one line
    assert "bad.parquet' as parquet (" in proc.stderr


def test_a_malformed_file_is_our_line_alone(tmp_path: Path) -> None:
    """datasets' JSON reader logs its own error line before it raises; only ours reaches stderr
    (a process of its own: the library's log handler writes to the stderr it found at import)."""
    import subprocess
    import sys

    write(tmp_path / "a.jsonl", records(30, 1))
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n' * 5 + '{"text": "a string cut\n' + '{"text": "x"}\n')
    argv = ["--set", f"data.files={json.dumps([str(tmp_path / 'broken.jsonl')])}",
            "--set", f"data.val_files={json.dumps([str(tmp_path / 'a.jsonl')])}"]
    proc = subprocess.run([sys.executable, "-m", "deepseek", "train", *SMALL, *argv, "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr  # one line
    # the line the editor shows (the reader counts rows from 0, from the first record not yet read)
    assert "broken.jsonl' at line 6 (the reader says: JSON parse error" in proc.stderr


def test_saved_positions_are_checked(host: PluginHost, tmp_path: Path) -> None:
    files = [str(write(tmp_path / f"p{i}.jsonl", records(20, i))) for i in range(3)]
    ds = dataset(host, files=files, seq_len=8, val_fraction=0.3)
    next(ds)
    good = ds.state_dict()
    for bad, words in [({**good, "doc": -1}, "doc is -1"), ({**good, "offset": "x"}, "offset is 'x'"),
                       ({**good, "cursor": 99}, "cursor is 99"), ({**good, "seq_len": 32}, "seq_len=32"),
                       ({**good, "fingerprint": "0"}, "corpus changed"), ({**good, "tokenizer": "bpe:1"}, "tokenizer")]:
        with pytest.raises(UsageError, match=words):
            fresh = dataset(host, files=files, seq_len=8, val_fraction=0.3)
            fresh.load_state_dict(bad)
            next(fresh)
    text_state = build_dataset(config_from_dict({"data": {"seq_len": 8}, "train": {"seed": 0}}, host=host), host).state_dict()
    with pytest.raises(UsageError, match="corpus changed"):
        dataset(host, files=files, seq_len=8, val_fraction=0.3).load_state_dict(text_state)
    with pytest.raises(UsageError, match="expected a table"):
        dataset(host, files=files, seq_len=8, val_fraction=0.3).load_state_dict([1, 2])  # type: ignore[arg-type]


def test_no_network_is_touched(host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    files = [str(write(tmp_path / f"p{i}{s}", records(20, i))) for i, s in enumerate([".jsonl", ".parquet", ".csv"])]
    ds = dataset(host, files=files, val_files=[str(write(tmp_path / "v.txt", records(10, 7)))], seq_len=8)
    for _ in range(30):
        next(ds)
    assert ds.validation_batches(2) and attempts == []


@pytest.mark.parametrize(("bad", "says"), [
    (b"caf\xe9 au lait", "is not UTF-8 text (byte 0xe9 at offset {at:,}); the 'hf' dataset reads .txt files as UTF-8: save the "
                 "file as UTF-8 (iconv -f latin1 -t utf-8) or leave it out of data.files"),
    (b"a\x00b", "is not text (a NUL byte at offset {at:,}: a binary file, or UTF-16 text); leave it out of data.files, "
                "or save it as UTF-8 text"),
])
def test_a_txt_file_is_checked_whole_before_training(host: PluginHost, tmp_path: Path, bad: bytes, says: str) -> None:
    """A bad byte far into a .txt file (past what datasets reads for the first batches) stops
    ``deepseek train`` before its run folder, naming the file and the byte's offset; it was found
    only when the reader got there."""
    good = ("\n\n".join(records(3000, 1)) + "\n\n").encode()
    assert len(good) > 256 << 10
    (tmp_path / "big.txt").write_bytes(good + bad + b"\n")
    write(tmp_path / "v.jsonl", records(30, 2))
    at = len(good) + next(i for i, b in enumerate(bad) if b == 0 or b > 127)
    argv = ["--set", f"data.files={json.dumps([str(tmp_path / 'big.txt')])}",
            "--set", f"data.val_files={json.dumps([str(tmp_path / 'v.jsonl')])}", "--set", "train.max_steps=2"]
    line = refused(host, "train", *SMALL, *argv, "--run-dir", str(tmp_path / "r"))
    assert line == f"error: data.files: {str(tmp_path / 'big.txt')!r} " + says.format(at=at)
    assert not (tmp_path / "r").exists()
