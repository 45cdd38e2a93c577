"""A Hugging Face user's data, as they bring it (everything made here, nothing downloaded):
folders saved with ``Dataset.save_to_disk`` (a ``DatasetDict``'s refused naming its splits),
Arrow shards, compressed JSON lines, empty files.
"""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")

from _eco_cli import ok, refused  # noqa: E402
from _hf_user import SMALL, jsonl, texts  # noqa: E402

from deepseek.config.load import config_from_dict  # noqa: E402
from deepseek.data.hf import HFDataset  # noqa: E402
from deepseek.errors import ConfigError  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.training.build import build_dataset  # noqa: E402


def val_bytes(host: PluginHost, **data: object) -> bytes:
    """The first validation batch of an ``hf`` dataset as bytes (byte tokens)."""
    config = config_from_dict({"data": {"name": "hf", "batch_size": 4, "seq_len": 16, **data}}, host=host)
    ds = build_dataset(config, host)
    assert isinstance(ds, HFDataset)
    return bytes(ds.validation_batches(1)[0]["input_ids"].flatten().tolist())


# ----------------------------------------------------------------------------- data


def test_save_to_disk_folders_arrow_and_compressed_files_read_like_json_lines(host: PluginHost,
                                                                            tmp_path: Path) -> None:
    train, val = texts(60, 1), texts(30, 2)
    plain = val_bytes(host, files=[str(jsonl(tmp_path / "t.jsonl", train, "content"))],
                      val_files=[str(jsonl(tmp_path / "v.jsonl", val, "content"))], text_field="content")
    assert plain == b"\0".join(t.encode() for t in val)[:64]
    datasets.Dataset.from_dict({"content": val}).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "v.jsonl.gz").write_bytes(gzip.compress((tmp_path / "v.jsonl").read_bytes()))
    (tmp_path / "v.jsonl.bz2").write_bytes(bz2.compress((tmp_path / "v.jsonl").read_bytes()))
    for given in ["saved", "saved/", "saved/*.arrow", "v.jsonl.gz", "v.jsonl.bz2"]:
        got = val_bytes(host, files=[str(tmp_path / "t.jsonl")], val_files=[str(tmp_path / given)],
                        text_field="content")
        assert got == plain, given


def test_csv_with_another_delimiter_and_json_records_under_a_key(host: PluginHost, tmp_path: Path) -> None:
    """``data.csv_delimiter`` (a European ``;`` CSV, a TSV) and ``data.json_field`` (one JSON
    object holding the records under a key, as many exports are) read the same text as JSON lines."""
    import csv
    import json

    train, val = texts(60, 1), texts(30, 2)
    jsonl(tmp_path / "t.jsonl", train, "content")
    plain = val_bytes(host, files=[str(tmp_path / "t.jsonl")],
                      val_files=[str(jsonl(tmp_path / "v.jsonl", val, "content"))], text_field="content")
    for name, sep in (("v.csv", ";"), ("v.tsv.csv", "\t")):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=sep)
            writer.writerow(["id", "content"])
            writer.writerows([i, t] for i, t in enumerate(val))
    # train.jsonl holds no CSV: the delimiter applies to the CSV validation file
    got = val_bytes(host, files=[str(tmp_path / "t.jsonl")], val_files=[str(tmp_path / "v.csv")],
                    text_field="content", csv_delimiter=";")
    assert got == plain
    got = val_bytes(host, files=[str(tmp_path / "t.jsonl")], val_files=[str(tmp_path / "v.tsv.csv")],
                    text_field="content", csv_delimiter="\t")
    assert got == plain
    (tmp_path / "v.json").write_text(json.dumps({"version": 2, "data": [{"content": t} for t in val]}))
    got = val_bytes(host, files=[str(tmp_path / "t.jsonl")], val_files=[str(tmp_path / "v.json")],
                    text_field="content", json_field="data")
    assert got == plain
    with pytest.raises(ConfigError, match="data.csv_delimiter: ';;' must be one character"):
        val_bytes(host, files=[str(tmp_path / "t.jsonl")], csv_delimiter=";;")
    with pytest.raises(ConfigError, match=r"data.json_field: 'data' names a key of .json files, and data.files holds none"):
        val_bytes(host, files=[str(tmp_path / "v.csv"), str(tmp_path / "t.jsonl")], json_field="data")
    with pytest.raises(ConfigError, match=r"data.csv_delimiter: ';' applies to CSV files, and data.files holds none"):
        val_bytes(host, files=[str(tmp_path / "t.jsonl")], csv_delimiter=";")
    out = ok(host, "tokenizer", "train", "--files", str(tmp_path / "v.csv"), "--csv-delimiter", ";", "--text-field",
             "content", "--val-fraction", "0", "--vocab-size", "300", "--out", str(tmp_path / "tok.json"))
    assert f"trained on {sum(len(t.encode()) for t in val):,} bytes" in out


def test_a_file_read_in_another_format_than_its_extension_says_is_named_so(host: PluginHost, tmp_path: Path) -> None:
    """data.format applies to val_files too: a .jsonl read as CSV said "has no column 'text'; its
    columns: {"text": ..." without saying it had been read as CSV."""
    from deepseek.errors import UsageError

    with open(tmp_path / "t.csv", "w", encoding="utf-8") as f:
        f.write("text\n" + "\n".join(texts(60, 1)) + "\n")
    with pytest.raises(UsageError, match=r"v\.jsonl' \(read as csv by data\.format; its extension says json\) has no "
                                         r"column 'text'"):
        val_bytes(host, files=[str(tmp_path / "t.csv")], val_files=[str(jsonl(tmp_path / "v.jsonl", texts(30, 2)))],
                  format="csv")


def test_folders_that_are_not_one_saved_dataset_are_one_line(host: PluginHost, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = {"text": texts(20, 3)}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "validation": datasets.Dataset.from_dict(rows),
                          "test": datasets.Dataset.from_dict(rows)}).save_to_disk("dd")
    line = refused(host, "train", *SMALL, "--set", 'data.files=["dd"]', "--run-dir", "r")
    assert "DatasetDict" in line and 'data.files = ["dd/train"], data.val_files = ["dd/validation"]' in line
    (tmp_path / "plain").mkdir()
    jsonl(tmp_path / "plain" / "a.jsonl", texts(5, 4))
    line = refused(host, "train", *SMALL, "--set", 'data.files=["plain"]', "--run-dir", "r")
    assert "'plain' is a folder" in line and "plain/**/*.jsonl" in line
    assert not (tmp_path / "r").exists()
    # the DatasetDict's splits, as the line says, train
    ok(host, "train", *SMALL, "--set", 'data.files=["dd/train"]', "--set", 'data.val_files=["dd/validation"]',
       "--max-steps", "1", "--run-dir", "r")


def test_empty_files_hold_no_records_and_an_empty_split_is_named(host: PluginHost, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "a.jsonl", texts(40, 5))
    jsonl(tmp_path / "v.jsonl", texts(20, 6))
    (tmp_path / "empty.jsonl").write_text("")
    line = refused(host, "train", *SMALL, "--set", 'data.files=["a.jsonl"]', "--set",
                   'data.val_files=["empty.jsonl"]', "--run-dir", "r")
    assert line == ("error: data: the validation split (empty.jsonl) holds no text (no document, or only empty ones); "
                    "give it documents with text")
    ok(host, "train", *SMALL, "--set", 'data.files=["a.jsonl", "empty.jsonl"]', "--set", 'data.val_files=["v.jsonl"]',
       "--max-steps", "1", "--run-dir", "r")


def test_one_small_file_whose_held_out_records_are_none_says_so(host: PluginHost, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """It said the split's documents were empty; none of the 10 records was held out at 0.05."""
    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "ten.jsonl", texts(10, 5))
    line = refused(host, "train", *SMALL, "--set", 'data.files=["ten.jsonl"]', "--run-dir", "r")
    assert line.startswith("error: data: the validation split (the records of ten.jsonl that data.val_fraction = "
                           "0.05 holds out: few records may give none; raise it, or set data.val_files)"), line
    ok(host, "train", *SMALL, "--set", 'data.files=["ten.jsonl"]', "--set", "data.val_fraction=0.5",
       "--max-steps", "1", "--run-dir", "r")


def test_tokenizer_train_on_the_hf_datasets_files_learns_the_training_split_only(host: PluginHost,
                                                                                tmp_path: Path) -> None:
    jsonl(tmp_path / "a.jsonl", texts(300, 11), "content")
    jsonl(tmp_path / "v.jsonl", ["zqxjv " * 40] * 20, "content")  # only in the validation file
    out = ok(host, "tokenizer", "train", "--files", str(tmp_path / "a.jsonl"), "--val-files",
             str(tmp_path / "v.jsonl"), "--text-field", "content", "--vocab-size", "300",
             "--out", str(tmp_path / "tok.json"))
    learnt = sum(len(t.encode()) for t in texts(300, 11))
    assert f"trained on {learnt:,} bytes of 1 file (" in out and f"validation split: {20 * 240:,} bytes" in out
    vocab = tokenizers.Tokenizer.from_file(str(tmp_path / "tok.json")).get_vocab()
    assert "Ġcat" in vocab and not any("zqx" in token for token in vocab)
    line = refused(host, "tokenizer", "train", "--files", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "t.json"))
    assert line.startswith("error: --text-field: ") and "has no column 'text'" in line
    line = refused(host, "tokenizer", "train", "--files", str(tmp_path / "nope*.jsonl"), "--out", str(tmp_path / "t.json"))
    assert line.startswith("error: --files: ") and "matches no files" in line
    assert "either --files" in refused(host, "tokenizer", "train", "--files", "a", "--data", "b", "--out", "t.json")
    assert "add --files" in refused(host, "tokenizer", "train", "--text-field", "content", "--out", "t.json")
    assert not (tmp_path / "t.json").exists()


def test_a_parquet_file_and_a_saved_dataset_of_no_rows_are_empty(host: PluginHost, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid Parquet file of no rows was 'cannot read ... (BatchSize must be greater than 0); fix
    the file', and a dataset of no rows saved with save_to_disk (no Arrow file) 'matches no files'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "a.jsonl", texts(40, 5))
    jsonl(tmp_path / "v.jsonl", texts(20, 6))
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "none.parquet")
    line = refused(host, "train", *SMALL, "--set", 'data.files=["a.jsonl"]', "--set",
                   'data.val_files=["none.parquet"]', "--run-dir", "r")
    assert line == ("error: data: the validation split (none.parquet) holds no text (no document, or only empty "
                    "ones); give it documents with text")
    datasets.Dataset.from_dict({"text": []}, features=datasets.Features({"text": datasets.Value("string")})
                               ).save_to_disk("saved-empty")
    line = refused(host, "train", *SMALL, "--set", 'data.files=["saved-empty"]', "--set", 'data.val_files=["v.jsonl"]',
                   "--run-dir", "r")
    assert line == ("error: data.files: 'saved-empty' is a dataset saved with save_to_disk that holds no records "
                    "(its state.json lists no Arrow file); save a dataset with records")
    assert not (tmp_path / "r").exists()
    ok(host, "train", *SMALL, "--set", 'data.files=["a.jsonl", "none.parquet"]', "--set", 'data.val_files=["v.jsonl"]',
       "--max-steps", "1", "--run-dir", "r")
