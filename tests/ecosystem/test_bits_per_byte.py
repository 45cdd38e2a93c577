"""Validation bits per byte with BPE tokens: each token's bytes come from the tokenizer's
vocabulary (the separator counts 1 byte, like byte tokens' separator byte), checked against a
hand computation (a tokenizer written here + fixed logits), against the UTF-8 length of real
text, and in ``deepseek eval``'s output; a tokenizer whose tokens have no fixed byte length
reports none. Every file is written here; nothing is downloaded."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

tokenizers = pytest.importorskip("tokenizers")

from _eco_cli import ok  # noqa: E402
from tokenizers import decoders, models, normalizers, pre_tokenizers  # noqa: E402

from deepseek.config.load import config_from_dict  # noqa: E402
from deepseek.data.bpe import load_bpe, train_bpe, write_tokenizer  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402
from deepseek.training.inference import evaluate_model  # noqa: E402

SEP = "<|endoftext|>"
MERGED = {"ab": 2, "abc": 3, "\u0120abc": 4}
"""The hand tokenizer's merged tokens and their bytes (``\u0120`` is the byte-level space)."""
SMALL = ["--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=2",
         "--set", "model.n_layers=1", "--set", "model.max_seq_len=32", "--set", "data.seq_len=16",
         "--set", "data.batch_size=4", "--set", "data.eval_batches=2", "--set", "data.shuffle_buffer=8",
         "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"", "--set", "train.warmup_steps=1",
         "--precision", "fp32", "--quiet"]


def hand_tokenizer(path: Path, *, prefix_space: bool = False, lowercase: bool = False) -> dict[str, int]:
    """A byte-level BPE written by hand: separator id 0, the 256 byte characters, then ``MERGED``."""
    vocab = {SEP: 0}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    for token in MERGED:
        vocab[token] = len(vocab)
    hf = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("ab", "c"), ("\u0120", "abc")]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    if lowercase:
        hf.normalizer = normalizers.Lowercase()
    hf.add_special_tokens([SEP])
    write_tokenizer(hf, path)
    return vocab


class FixedLogits(nn.Module):
    """The same logits at every position, whatever the input: cross-entropy by hand is easy."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.logits.expand(*input_ids.shape, -1)
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def corpus(folder: Path) -> Path:
    folder.mkdir()
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(("abc abc ab é x\n" if i % 2 else "ab abc zz ü abc\n") * (2 + i))
    return folder


def config(data: Path, tok: Path, vocab: int, batch_size: int = 3) -> Any:
    return config_from_dict({
        "model": {"name": "tiny", "vocab_size": vocab, "d_model": 32, "n_heads": 2, "n_layers": 1,
                  "max_seq_len": 16},
        "data": {"path": str(data), "tokenizer": str(tok), "seq_len": 16, "batch_size": batch_size, "eval_batches": 2},
    }, host=PluginHost(PluginSettings(autoload=False)))


def test_bits_per_byte_is_the_hand_computation(tmp_path: Path) -> None:
    tok = tmp_path / "tokenizer.json"
    vocab = hand_tokenizer(tok)
    cfg = config(corpus(tmp_path / "corpus"), tok, len(vocab))
    logits = torch.linspace(-2.0, 3.0, len(vocab))
    values = evaluate_model(FixedLogits(logits), cfg)
    # by hand: every predicted token costs logsumexp(logits) - logits[id] nats and stands for its
    # bytes: a merged token its letters, a byte token 1, the separator 1
    by_id = {i: MERGED.get(t, 1) for t, i in vocab.items()}
    from deepseek.training.build import build_dataset

    batches = build_dataset(cfg).validation_batches(2)
    targets = torch.cat([b["targets"].flatten() for b in batches]).tolist()
    assert {i for i in targets} & {vocab[t] for t in MERGED}, "the merged tokens take part"
    assert vocab[SEP] in targets, "so does the separator"
    lse = float(torch.logsumexp(logits.double(), 0))
    nats = sum(lse - float(logits[i]) for i in targets)
    n_bytes = sum(by_id[i] for i in targets)
    assert n_bytes > len(targets)  # BPE: more than one byte per token
    assert values["val_bits_per_byte"] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-6)
    assert values["val_loss"] == pytest.approx(nats / len(targets), rel=1e-6)


@pytest.mark.parametrize("change", [{"prefix_space": True}, {"lowercase": True}])
def test_a_tokenizer_without_fixed_bytes_per_token_reports_none(tmp_path: Path, change: dict[str, bool]) -> None:
    tok = tmp_path / "tokenizer.json"
    vocab = hand_tokenizer(tok, **change)
    assert load_bpe(tok).token_bytes() is None
    values = evaluate_model(FixedLogits(torch.zeros(len(vocab))), config(corpus(tmp_path / "corpus"), tok, len(vocab)))
    assert set(values) == {"val_loss", "val_perplexity"}  # no bits per byte; perplexity needs tokens only
    assert values["val_loss"] == pytest.approx(math.log(len(vocab)), rel=1e-6)


def test_token_bytes_add_up_to_the_utf8_length_of_any_text(tmp_path: Path) -> None:
    texts = ["def f(x):\n    return x ** 2  # square\n", "héllo wörld 世界 \U0001F600\U0001F600 \t\r\n",
             "   spaces   and\n\n\nnewlines", "ünïcödé ÅÅÅ Ωμέγα Привет", "x" * 50]
    write_tokenizer(train_bpe(texts * 30, vocab_size=320), tmp_path / "t.json")
    tok = load_bpe(tmp_path / "t.json")
    sizes = tok.token_bytes()
    assert sizes is not None and len(sizes) == tok.vocab_size and sizes[tok.separator] == 1
    for text in [*texts, "never seen: ∮ E⋅da = Q,  n → ∞, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "".join(texts)]:
        ids = tok.encode(text)
        assert sum(sizes[i] for i in ids) == len(text.encode("utf-8")), text
    assert max(sizes) > 1


def test_eval_shows_bits_per_byte_of_a_bpe_run(tmp_path: Path, host: PluginHost) -> None:
    tok = tmp_path / "tokenizer.json"
    hand_tokenizer(tok)
    data = corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    ok(host, "train", *SMALL, "--set", f"data.path={json.dumps(str(data))}",
       "--set", f"data.tokenizer={json.dumps(str(tok))}", "--set", "model.vocab_size=260",
       "--max-steps", "2", "--run-dir", str(run))
    values = json.loads(ok(host, "eval", "--checkpoint", str(run), "--json", "--device", "cpu"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert values["val_bits_per_byte"] == pytest.approx([r for r in rows if "val_loss" in r][-1]["val_bits_per_byte"])
    # independently of the vocabulary: the targets of the validation batches are one stretch of
    # the validation stream; its text is their decoding, and each separator counts 1 byte
    from deepseek.training.build import build_dataset

    cfg = config(data, tok, 260, batch_size=4)  # the run's data settings (SMALL)
    targets = torch.cat([b["targets"].flatten() for b in build_dataset(cfg).validation_batches(2)]).tolist()
    decoded = tokenizers.Tokenizer.from_file(str(tok)).decode([i for i in targets if i != 0])
    assert "é" in decoded or "ü" in decoded, "two-byte characters take part"
    assert "\ufffd" not in decoded, "the stretch does not cut a character"
    n_bytes = len(decoded.encode("utf-8")) + targets.count(0)
    expected = values["val_loss"] * len(targets) / math.log(2) / n_bytes
    assert values["val_bits_per_byte"] == pytest.approx(expected, rel=1e-9)
    text = ok(host, "eval", "--checkpoint", str(run), "--device", "cpu")
    assert text.startswith(f"val_loss {values['val_loss']:.4f}, val_bits_per_byte {values['val_bits_per_byte']:.4f}, "
                           f"val_perplexity {math.exp(values['val_loss']):.4f} ")



def test_the_hf_dataset_reports_it_too(tmp_path: Path) -> None:
    """The ``hf`` dataset (JSON lines here) counts bytes like the text dataset: byte tokens give
    ``val_loss / ln 2``, the hand tokenizer gives fewer tokens for the same bytes."""
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": f"abc abc ab é {i}"}) + "\n" for i in range(40)))
    (tmp_path / "valid.jsonl").write_text("".join(json.dumps({"text": f"ab abc ü {i}"}) + "\n" for i in range(40)))
    tok = tmp_path / "tokenizer.json"
    vocab = hand_tokenizer(tok)
    host = PluginHost(PluginSettings(autoload=False))
    data = {"name": "hf", "files": [str(tmp_path / "train.jsonl")], "val_files": [str(tmp_path / "valid.jsonl")],
            "seq_len": 16, "batch_size": 3, "eval_batches": 2}
    model = {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16}
    as_bytes = evaluate_model(FixedLogits(torch.linspace(0.0, 1.0, 256)),
                              config_from_dict({"model": model, "data": data}, host=host))
    assert as_bytes["val_bits_per_byte"] == pytest.approx(as_bytes["val_loss"] / math.log(2), rel=1e-9)
    with_bpe = config_from_dict({"model": {**model, "vocab_size": len(vocab)}, "data": {**data, "tokenizer": str(tok)}},
                                host=host)
    from deepseek.training.build import build_dataset

    dataset = build_dataset(with_bpe)
    texts = [dataset.predicted_text(b) for b in dataset.validation_batches(2)]
    assert all(t is not None and t.bytes > t.tokens == 48 for t in texts)
    values = evaluate_model(FixedLogits(torch.zeros(len(vocab))), with_bpe)
    n_bytes = sum(t.bytes for t in texts if t is not None)
    assert values["val_bits_per_byte"] == pytest.approx(math.log2(len(vocab)) * 96 / n_bytes, rel=1e-6)
