"""BPE tokenizers end to end: ``deepseek tokenizer train`` on the text dataset's training split,
a GPT trained with ``[data] tokenizer`` (its vocabulary follows the tokenizer), the run folder's
``tokenizer.json`` used by ``generate`` and ``eval`` (also after the original file is gone),
exact resume, and hostile tokenizer files and settings checked against that trained tokenizer and
run (one line each); those needing neither are in test_tokenizer_hostile.py. Every file is written
here; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")

from _bpe_corpus import SMALL, UNSEEN, WORDS, write_corpus  # noqa: E402
from _eco_cli import ok, refused  # noqa: E402

from deepseek import hookimpl  # noqa: E402
from deepseek.config.load import config_from_dict  # noqa: E402
from deepseek.data.corpus import path_corpus  # noqa: E402
from deepseek.data.loader import PackedBatches  # noqa: E402
from deepseek.data.sources import PieceSource  # noqa: E402
from deepseek.data.text import TextDataset  # noqa: E402
from deepseek.data.tokenizer import open_tokenizer  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402
from deepseek.training.inference import load_trained  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, host: PluginHost) -> dict[str, Any]:
    """A tokenizer trained by the command, and a 4-step run of a tiny GPT that uses it."""
    root = tmp_path_factory.mktemp("bpe")
    corpus = write_corpus(root / "corpus")
    tok = root / "tok" / "tokenizer.json"
    out = ok(host, "tokenizer", "train", "--data", str(corpus), "--vocab-size", "300", "--out", str(tok))
    data = ["--set", f"data.path={json.dumps(str(corpus))}", "--set", f"data.tokenizer={json.dumps(str(tok))}"]
    ok(host, "train", *SMALL, *data, "--max-steps", "4", "--run-dir", str(root / "run"))
    return {"root": root, "corpus": corpus, "tok": tok, "out": out, "run": root / "run", "data": data}


def test_tokenizer_train_writes_a_byte_level_bpe_of_the_training_split(trained: dict[str, Any]) -> None:
    hf = tokenizers.Tokenizer.from_file(str(trained["tok"]))
    assert hf.get_vocab_size() == 300 and hf.token_to_id("<|endoftext|>") == 0
    assert "vocabulary 300" in trained["out"] and "tokens/byte" in trained["out"]
    vocab = hf.get_vocab()
    assert any("quick" in t for t in vocab)  # training words are merged ...
    assert not any(UNSEEN[:3] in t for t in vocab)  # ... the held-out file's never
    text = "def quick(self):\n    return 'héllo' + \U0001F600"
    assert hf.decode(hf.encode(text).ids) == text  # byte level: any text round-trips


def test_model_vocabulary_and_run_folder_follow_the_tokenizer(trained: dict[str, Any]) -> None:
    run = trained["run"]
    assert (run / "tokenizer.json").read_bytes() == trained["tok"].read_bytes()
    model, config, state = load_trained(run)
    assert config.model.options.vocab_size == 300 and tuple(model.wte.weight.shape) == (300, 32)
    tok = open_tokenizer(str(trained["tok"]))
    assert state["data"]["tokenizer"] == tok.identity and tok.identity.startswith("bpe:")


def test_generate_encodes_and_decodes_with_the_run_tokenizer(trained: dict[str, Any], host: PluginHost) -> None:
    prompt = "the quick brown"
    out = ok(host, "generate", "--checkpoint", str(trained["run"]), prompt, "--max-new-tokens", "8",
             "--temperature", "0", "--device", "cpu")
    hf = tokenizers.Tokenizer.from_file(str(trained["run"] / "tokenizer.json"))
    ids = hf.encode(prompt).ids
    assert hf.decode(ids) == prompt and len(ids) < len(prompt.encode())  # BPE, not bytes
    model, _, _ = load_trained(trained["run"])
    gen = torch.Generator().manual_seed(0)
    new = model.generate(torch.tensor([ids]), 8, temperature=0.0, top_k=50, generator=gen)[0, len(ids):].tolist()
    assert out == prompt + hf.decode(new) + "\n"


def test_eval_and_generate_after_the_original_tokenizer_is_deleted(trained: dict[str, Any], host: PluginHost,
                                                                  tmp_path: Path) -> None:
    import shutil

    tok, run = tmp_path / "elsewhere" / "tokenizer.json", tmp_path / "run"
    tok.parent.mkdir()
    shutil.copy(trained["tok"], tok)
    ok(host, "train", *SMALL, "--set", f"data.path={json.dumps(str(trained['corpus']))}",
       "--set", f"data.tokenizer={json.dumps(str(tok))}", "--max-steps", "4", "--run-dir", str(run))
    before = json.loads(ok(host, "eval", "--checkpoint", str(run), "--json", "--device", "cpu"))
    gen = ok(host, "generate", "--checkpoint", str(run), "alpha", "--max-new-tokens", "5", "--device", "cpu")
    tok.unlink()
    after = json.loads(ok(host, "eval", "--checkpoint", str(run), "--json", "--device", "cpu"))
    assert after["val_loss"] == before["val_loss"] and after["step"] == 4
    assert ok(host, "generate", "--checkpoint", str(run), "alpha", "--max-new-tokens", "5", "--device", "cpu") == gen
    # and resuming the run works from its own copy
    ok(host, "train", "--resume", str(run), "--max-steps", "6")
    assert (run / "checkpoints" / "step-6").is_dir()


def test_resume_is_exact_with_a_tokenizer(trained: dict[str, Any], host: PluginHost, tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    same = [*SMALL, *trained["data"], "--set", "train.decay_steps=6"]  # one schedule for both
    ok(host, "train", *same, "--max-steps", "6", "--run-dir", str(straight))
    ok(host, "train", *same, "--max-steps", "2", "--run-dir", str(resumed))
    ok(host, "train", "--resume", str(resumed), "--max-steps", "6")

    def losses(run: Path) -> dict[int, float]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in rows if "loss" in r}

    a, b = losses(straight), losses(resumed)
    assert [a[s] for s in (3, 4, 5, 6)] == [b[s] for s in (3, 4, 5, 6)]


@pytest.mark.parametrize("consumed", [0, 1, 3, 5])
def test_packed_bpe_batches_resume_exactly(trained: dict[str, Any], consumed: int) -> None:
    tok = open_tokenizer(str(trained["tok"]))
    source = PieceSource(path_corpus(trained["corpus"]), tok)
    ref = PackedBatches(source, 16, 4, seed=3, shuffle_buffer=5)
    for _ in range(consumed):
        next(ref)
    state = json.loads(json.dumps(ref.state_dict()))
    expected = [next(ref) for _ in range(6)]
    again = PackedBatches(PieceSource(path_corpus(trained["corpus"]), tok), 16, 4, seed=3, shuffle_buffer=5)
    again.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(expected, [next(again) for _ in range(6)], strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x, _ = expected[0]
    assert x.dtype == torch.int64 and int(x.max()) < tok.vocab_size


def test_validation_stream_is_the_documents_ids_joined_by_the_separator(trained: dict[str, Any]) -> None:
    tok = open_tokenizer(str(trained["tok"]))
    corpus = path_corpus(trained["corpus"])
    (x, y), = PackedBatches(PieceSource(corpus, tok), 16, 2).val_batches(1)
    piece = corpus.pieces("val")[0]
    ids = tok.encode(Path(piece.path).read_text())
    assert x.flatten().tolist() == ids[:32] and y.flatten().tolist()[-1] == ids[32]
    assert tok.decode(x[0]).startswith(UNSEEN)


def test_a_smaller_model_vocabulary_is_refused(trained: dict[str, Any], host: PluginHost, tmp_path: Path) -> None:
    line = refused(host, "train", *SMALL, *trained["data"], "--set", "model.vocab_size=256",
                   "--run-dir", str(tmp_path / "r"))
    assert ("model.vocab_size: 256 is smaller than the 300 token ids of dataset 'text' (its model_vocab_size; "
            "for 'text' and 'hf', data.tokenizer's vocabulary)") in line
    config = config_from_dict({"data": {"tokenizer": str(trained["tok"])}, "model": {"vocab_size": 512}},
                              host=PluginHost(PluginSettings(autoload=False)))
    assert config.model.options.vocab_size == 512  # a larger one is kept
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("size", [290, 320])
def test_resuming_with_another_tokenizer_is_refused(trained: dict[str, Any], host: PluginHost, tmp_path: Path,
                                                   size: int) -> None:
    """A smaller or a larger tokenizer (whose vocabulary would also change the model's shape) is
    named as the tokenizer, before the weights are read."""
    other = tmp_path / "other.json"
    ok(host, "tokenizer", "train", "--data", str(trained["corpus"]), "--vocab-size", str(size), "--out", str(other))
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    line = refused(host, "train", "--resume", str(run), "--max-steps", "6",
                   "--set", f"data.tokenizer={json.dumps(str(other))}")
    assert line.startswith(f"error: data.tokenizer: {other} is not the tokenizer") and "was trained with (bpe:" in line
    assert "resume without data.tokenizer" in line


def test_a_replaced_run_tokenizer_is_refused_by_eval_generate_and_resume(trained: dict[str, Any], host: PluginHost,
                                                                        tmp_path: Path) -> None:
    """The run's copy of tokenizer.json swapped for another tokenizer: every id would decode to
    other text, so the commands that read it compare it with the hash the
    checkpoint recorded and refuse it in one line; put back, all work again."""
    import shutil

    other = tmp_path / "other.json"
    ok(host, "tokenizer", "train", "--data", str(trained["corpus"]), "--vocab-size", "290", "--out", str(other))
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    own = (run / "tokenizer.json").read_bytes()
    shutil.copy(other, run / "tokenizer.json")
    for argv in (["eval", "--checkpoint", str(run), "--device", "cpu"],
                 ["generate", "--checkpoint", str(run), "alpha", "--max-new-tokens", "3", "--device", "cpu"],
                 ["train", "--resume", str(run), "--max-steps", "6"]):
        line = refused(host, *argv)
        assert "tokenizer.json: is not the tokenizer this run was trained with" in line, argv
        assert "put back the run's own tokenizer.json" in line
    assert not (run / "checkpoints" / "step-6").exists()
    (run / "tokenizer.json").write_bytes(own)
    ok(host, "eval", "--checkpoint", str(run), "--device", "cpu")


def test_a_run_without_its_tokenizer_copy_reads_its_setting_checked(trained: dict[str, Any], host: PluginHost,
                                                                   tmp_path: Path, past_fifo: Any) -> None:
    """The run folder's tokenizer.json gone: export --format hf takes the file data.tokenizer names,
    as generate and eval do (it wrote no tokenizer and said 'the vocabulary is raw UTF-8 bytes');
    once that file is retrained in place, all three refuse it in one line (eval and generate read
    text as other ids, exit 0). A FIFO in the copy's place is no copy either: the line says so (it
    said the copy "is gone")."""
    import os
    import shutil

    tok = tmp_path / "tok.json"
    shutil.copy(trained["tok"], tok)
    run = tmp_path / "run"
    data = ["--set", f"data.path={json.dumps(str(trained['corpus']))}", "--set", f"data.tokenizer={json.dumps(str(tok))}"]
    ok(host, "train", *SMALL, *data, "--max-steps", "2", "--run-dir", str(run))
    (run / "tokenizer.json").unlink()
    ok(host, "export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert (tmp_path / "hf" / "tokenizer.json").read_bytes() == tok.read_bytes()
    ok(host, "tokenizer", "train", "--data", str(trained["corpus"]), "--vocab-size", "290", "--out", str(tok))
    for argv in (["eval", "--checkpoint", str(run), "--device", "cpu"],
                 ["generate", "--checkpoint", str(run), "alpha", "--max-new-tokens", "3", "--device", "cpu"],
                 ["export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf2")]):
        line = refused(host, *argv)
        assert line.startswith(f"error: {tok}: is not the tokenizer this run was trained with (its content is bpe:")
        assert line.endswith(f"and the run's own copy {run / 'tokenizer.json'} is gone; put the run's "
                             "tokenizer.json back there (token ids would mean other text)"), argv
    assert not (tmp_path / "hf2").exists()
    os.mkfifo(run / "tokenizer.json")
    line = past_fifo(run / "tokenizer.json", lambda: refused(host, "eval", "--checkpoint", str(run), "--device", "cpu"))
    assert line.endswith(f"and the run's own copy {run / 'tokenizer.json'} is not a regular file (a FIFO, device or "
                         "socket); put the run's tokenizer.json back there (token ids would mean other text)"), line


def test_missing_separator_and_missing_file(trained: dict[str, Any], host: PluginHost, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel()
    hf.train_from_iterator(["alpha beta"] * 10, trainers.BpeTrainer(vocab_size=270, special_tokens=["<s>"],
                                                                   show_progress=False))
    nosep = tmp_path / "nosep.json"
    hf.save(str(nosep))
    line = refused(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(nosep))}")
    assert "no document-separator token '<|endoftext|>'" in line and "data.separator_token" in line
    # naming the tokenizer's own separator makes it usable
    config = config_from_dict({"data": {"tokenizer": str(nosep), "separator_token": "<s>"}},
                              host=PluginHost(PluginSettings(autoload=False)))
    assert config.model.options.vocab_size == hf.get_vocab_size()
    line = refused(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(tmp_path / 'nope.json'))}")
    assert "data.tokenizer" in line and "is not a file" in line
    assert "vocabulary" in ok(host, "tokenizer", "info", str(trained["tok"]))
    assert "no document-separator token '<|x|>'" in refused(host, "tokenizer", "info", str(trained["tok"]),
                                                           "--separator", "<|x|>")


def test_a_folder_where_the_run_keeps_its_tokenizer_is_refused(trained: dict[str, Any], host: PluginHost,
                                                               tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "tokenizer.json").mkdir(parents=True)
    line = refused(host, "train", *SMALL, *trained["data"], "--max-steps", "2", "--run-dir", str(run))
    # checked with the run's own files, before anything is written
    assert line.endswith("run/tokenizer.json: is a folder where the run writes its tokenizer.json; move it away or "
                         "pick another --run-dir"), line
    assert not (run / "config.toml").exists() and not (run / "checkpoints").exists()


def test_out_never_overwrites_data_a_config_or_a_runs_tokenizer(trained: dict[str, Any], host: PluginHost,
                                                                tmp_path: Path) -> None:
    """Each was overwritten without a word (exit 0): the training data, a config, and the run's own
    copy of its tokenizer (after which the run could not be evaluated)."""
    corpus = trained["corpus"]
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps({"text": f"alpha beta {i}"}) + "\n" for i in range(200)))
    config = tmp_path / "c.toml"
    config.write_text("[train]\nmax_steps = 2\n")
    run_copy = trained["run"] / "tokenizer.json"
    for target in (data, config, run_copy):
        before = target.read_bytes()
        line = refused(host, "tokenizer", "train", "--files", str(data), "--vocab-size", "300", "--out", str(target))
        assert line.startswith(f"error: --out {target}: "), line
        assert target.read_bytes() == before
    assert "is the tokenizer of the run in" in refused(host, "tokenizer", "train", "--data", str(corpus),
                                                       "--vocab-size", "300", "--out", str(run_copy))
    again = tmp_path / "tok.json"  # a tokenizer.json of its own is replaced, as before
    ok(host, "tokenizer", "train", "--data", str(corpus), "--vocab-size", "300", "--out", str(again))
    assert "vocabulary 300" in ok(host, "tokenizer", "train", "--data", str(corpus), "--vocab-size", "300",
                                  "--out", str(again))


def test_a_text_file_that_is_not_utf8_is_refused_by_a_tokenizer(trained: dict[str, Any], host: PluginHost,
                                                                 tmp_path: Path) -> None:
    """A Latin-1 file among the text dataset's files was tokenized with U+FFFD for each accented
    letter, by the tokenizer trainer and by the run, without a word (the hf dataset refused it)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"doc{i:02d}.txt").write_text(" ".join(WORDS * 20) + "\n")
    bad = corpus / "doc07.txt"
    bad.write_bytes("the café was naïve\n".encode("latin-1") * 30)
    out = tmp_path / "tok.json"
    line = refused(host, "tokenizer", "train", "--data", str(corpus), "--val-fraction", "0", "--vocab-size", "300",
                   "--out", str(out))
    assert line == (f"error: --data: {str(bad)!r} is not UTF-8 text (byte 0xe9 at offset 7); a tokenizer reads "
                    "text: save the file as UTF-8 (iconv -f latin1 -t utf-8) or leave it out with --pattern")
    assert not out.exists()
    # in a run, as the corpus opens: a run whose batches did not reach the file trained on (exit 0)
    line = refused(host, "train", *SMALL, "--set", f"data.path={json.dumps(str(corpus))}", "--set",
                   f"data.tokenizer={json.dumps(str(trained['tok']))}", "--max-steps", "1", "--run-dir",
                   str(tmp_path / "run"))
    assert line == (f"error: data.path: {str(bad)!r} is not UTF-8 text (byte 0xe9 at offset 7); a tokenizer reads "
                    "text: save the file as UTF-8 (iconv -f latin1 -t utf-8) or leave it out with data.pattern; or "
                    "train on byte tokens (no data.tokenizer)")
    assert not (tmp_path / "run").exists()
    # the file alone
    line = refused(host, "train", *SMALL, "--set", f"data.path={json.dumps(str(bad))}", "--set",
                   f"data.tokenizer={json.dumps(str(trained['tok']))}", "--max-steps", "2", "--run-dir",
                   str(tmp_path / "run"))
    assert line.startswith(f"error: data.path: {str(bad)!r} is not UTF-8 text (byte 0x")  # é or ï
    assert line.endswith("or train on byte tokens (no data.tokenizer)")
    assert not (tmp_path / "run").exists()
    # byte tokens read any bytes, as before
    ok(host, "train", *SMALL, "--set", f"data.path={json.dumps(str(corpus))}", "--max-steps", "1", "--run-dir",
       str(tmp_path / "bytes"))


class Replaced(NamedTuple):
    """What :func:`_replaced_after_read` set up."""

    run: Path
    own: bytes
    """The run's tokenizer.json."""
    other: bytes
    """The replacement: a valid tokenizer whose two last ids (tokens ``a`` and ``b``) mean each other's text."""
    vocab: dict[str, int]
    """The replacement's vocabulary."""
    a: str
    b: str
    reads: list[Path]
    """Each read of the run's tokenizer.json so far."""


def _replaced_after_read(trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
                         after: int = 1) -> Replaced:
    """A copy of the trained run whose ``tokenizer.json`` is replaced, on disk, right after the
    ``after``-th read of it (``deepseek.parsing.read_file``; ``0``: never) by a valid tokenizer
    whose two last ids mean each other's text."""
    import shutil

    import deepseek.parsing

    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    copy = run / "tokenizer.json"
    own = copy.read_bytes()
    spec = json.loads(own)
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # a valid tokenizer whose two last ids mean the other text
    other = json.dumps(spec).encode("utf-8")
    real = deepseek.parsing.read_file
    reads: list[Path] = []

    def read_file(path: Any, *args: Any, **kwargs: Any) -> bytes:
        data = real(path, *args, **kwargs)
        if Path(path) == copy:
            reads.append(copy)
            if len(reads) == after:
                copy.write_bytes(other)  # replaced right after this read
        return data

    monkeypatch.setattr(deepseek.parsing, "read_file", read_file)
    return Replaced(run, own, other, vocab, a, b, reads)


def test_the_run_tokenizer_checked_is_the_one_used(trained: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """generate (and export) hashed the run's tokenizer.json against the digest its checkpoint
    records, then read the file again to parse it: a file replaced between the two reads was used
    unchecked (every id meaning other text). The bytes checked are now the bytes parsed: here the
    file is replaced right after its first read, and the tokenizer is the run's own."""
    from deepseek.data.bpe import file_digest
    from deepseek.training.inference import trained_tokenizer

    run, own, other, vocab, a, b, _ = _replaced_after_read(trained, tmp_path, monkeypatch)
    tok = trained_tokenizer(run)
    assert (run / "tokenizer.json").read_bytes() == other  # it was replaced, after the read the check made
    assert tok.identity == f"bpe:{file_digest(own)}" != f"bpe:{file_digest(other)}"
    assert tok.hf.token_to_id(a) == vocab[b]  # the run's own id of the token, not the replacement's


def test_eval_holds_its_data_to_the_run_tokenizer_it_checked(trained: dict[str, Any], host: PluginHost,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval checked the run's tokenizer.json against the checkpoint's record, then its dataset read
    the file again by path: a file replaced in between tokenized the evaluation (its loss over
    other ids, exit 0; a resume compares what its data parsed). eval now holds the identity its
    data parsed to the record the same way: here the file is replaced right after the check's
    read, and eval refuses it in one line, exit 2."""
    from deepseek.data.bpe import file_digest

    run, own, other, *_, reads = _replaced_after_read(trained, tmp_path, monkeypatch)
    line = refused(host, "eval", "--checkpoint", str(run), "--device", "cpu")
    assert reads and (run / "tokenizer.json").read_bytes() == other  # replaced after the check read it
    assert line == (f"error: {run / 'tokenizer.json'}: is not the tokenizer this run was trained with (the data read "
                    f"it as bpe:{file_digest(other)}, after its check: it was replaced meanwhile, the checkpoint "
                    f"recorded bpe:{file_digest(own)}); put back the run's own tokenizer.json (token ids would mean "
                    "other text)")
    (run / "tokenizer.json").write_bytes(own)  # the run's own again: evaluated
    assert "val_loss" in ok(host, "eval", "--checkpoint", str(run), "--device", "cpu", "--batches", "1")


def test_export_writes_the_run_tokenizer_it_checked(trained: dict[str, Any], host: PluginHost, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``export --format hf`` checked the run's tokenizer.json against the checkpoint's record
    (twice), read it twice more (the vocabulary check, the separator's) and copied it by path: a
    file replaced after its last check was the export's tokenizer.json (every id meaning other
    text to a Hugging Face user). The export now reads it once, and writes the bytes it checked:
    here the file is replaced right after the export's last read of it (counted by an export
    before), and the export holds the run's own."""
    counted = _replaced_after_read(trained, tmp_path / "count", monkeypatch, after=0)
    ok(host, "export", "--checkpoint", str(counted.run), "--format", "hf", "--out", str(tmp_path / "count" / "hf"))
    last = len(counted.reads)
    run, own, other, *_ = _replaced_after_read(trained, tmp_path, monkeypatch, after=last)
    ok(host, "export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert (run / "tokenizer.json").read_bytes() == other  # it was replaced, after the read the export checked
    assert (tmp_path / "hf" / "tokenizer.json").read_bytes() == own
    assert last == 1  # read once: its check, its vocabulary and separator, and the bytes written are one read
    spec = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert (spec["eos_token"], spec["bos_token"]) == ("<|endoftext|>", "<|endoftext|>")


class _OwnPositionText(TextDataset):
    """A plugin's dataset that reads ``data.tokenizer`` (the text dataset's keys) and records its
    position its own way: no ``tokenizer`` in it (``state_dict`` is the plugin's own)."""

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "tokenizer"}


class _OwnPositionPlugin:
    @hookimpl
    def deepseek_register_datasets(self, register):  # noqa: ANN001, ANN201
        register("acme.own_position", _OwnPositionText)


def test_eval_of_a_plugin_dataset_reading_the_run_tokenizer_is_not_refused(trained: dict[str, Any]) -> None:
    """eval of another dataset (``--set data.name``) that reads the run's own tokenizer.json,
    unreplaced, but records no tokenizer in its position: nothing says the file was replaced, and
    the evaluation runs (it was refused as 'the data read it as bytes, after its check: it was
    replaced meanwhile', exit 2)."""
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(_OwnPositionPlugin(), dist="acme-rows").status == "ok"
    out = ok(host, "eval", "--checkpoint", str(trained["run"]), "--device", "cpu", "--batches", "1",
             "--set", 'data.name="acme.own_position"')
    assert "val_loss" in out
