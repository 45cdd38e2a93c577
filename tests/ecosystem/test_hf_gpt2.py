"""deepseek's GPT and transformers' GPT2LMHeadModel, both ways, checked against transformers itself
(no download: every model and tokenizer is made here).

Export: a GPT trained through the CLI, exported with ``deepseek export --format hf``, opens with
``GPT2LMHeadModel.from_pretrained`` and gives the same logits and the same greedy tokens; a run
with a BPE tokenizer exports it so that ``AutoTokenizer`` encodes as the run did. Import: a random
GPT-2 saved with ``save_pretrained``, imported with ``deepseek import-hf``, gives the same logits
and greedy tokens, and ``deepseek train DIR/config.toml`` starts from those weights (its first
training loss is transformers' loss on the same batch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from _eco_cli import ok as deepseek  # noqa: E402

from deepseek.config.load import load_config  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.training.build import build_dataset  # noqa: E402
from deepseek.training.inference import load_trained  # noqa: E402

SMALL = ["--set", "model.name=tiny", "--set", "model.d_model=32", "--set", "model.n_heads=4",
         "--set", "model.n_layers=2", "--set", "model.max_seq_len=32", "--set", "data.seq_len=16",
         "--set", "data.batch_size=4", "--set", "data.eval_batches=1", "--set", "logging.plot=false",
         "--set", "strategy.device=\"cpu\"", "--set", "train.warmup_steps=1", "--precision", "fp32", "--quiet"]
RUN = ["--set", "data.batch_size=4", "--set", "data.seq_len=16", "--set", "data.eval_batches=1",
       "--set", "logging.plot=false", "--set", "strategy.device=\"cpu\"", "--set", "train.warmup_steps=1",
       "--set", "train.lr=1e-3", "--precision", "fp32", "--quiet"]
SEPARATOR = "<|endoftext|>"


def corpus(folder: Path) -> Path:
    import random

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "the", "cat", "sat", "on", "mat", "def", "return", "x = 1"]
    folder.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text("\n".join(" ".join(rng.choice(words) for _ in range(10)) for _ in range(300)))
    return folder


def bpe_tokenizer(path: Path, texts: Path, vocab: int = 300) -> Path:
    """A byte-level BPE ``tokenizer.json`` with the separator at id 0 (tokenizers, offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[SEPARATOR],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(p) for p in sorted(texts.iterdir())], trainer)
    tok.save(str(path))
    return path


def hf_logits_loss(model: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    with torch.no_grad():
        logits = model(x).logits
    return logits, torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    diff = (a - b).abs().max().item()
    assert diff <= 1e-4 * max(1.0, b.abs().max().item()), diff


# ----------------------------------------------------------------------------- export


def test_export_opens_in_transformers_with_the_same_logits_and_tokens(tmp_path: Path, host: PluginHost) -> None:
    run = tmp_path / "run"
    deepseek(host, "train", *SMALL, "--max-steps", "8", "--run-dir", str(run))
    said = deepseek(host, "export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert "raw UTF-8 bytes (ids 0..255)" in said and "no" in said
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ours, _, _ = load_trained(run, host=host)
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # tied as trained
    x = torch.tensor([list(b"def f(x):\n    return x + 1\n")[:24], list(b"the cat sat on the mat. ok")[:24]])
    with torch.no_grad():
        assert_close(hf(x).logits, ours(x))
    prompt = x[:, :6]
    expected = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    got = ours.generate(prompt, 20, temperature=0)
    assert torch.equal(got, expected), (got.tolist(), expected.tolist())


def test_export_untied_head(tmp_path: Path, host: PluginHost) -> None:
    run = tmp_path / "run"
    deepseek(host, "train", *SMALL, "--set", "model.tie_embeddings=false", "--max-steps", "2", "--run-dir", str(run))
    deepseek(host, "export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf"))
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ours, _, _ = load_trained(run, host=host)
    assert hf.config.tie_word_embeddings is False
    assert torch.equal(hf.lm_head.weight, ours.lm_head.weight)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    x = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(hf(x).logits, ours(x))


def test_export_carries_the_runs_tokenizer(tmp_path: Path, host: PluginHost) -> None:
    texts = corpus(tmp_path / "texts")
    tok = bpe_tokenizer(tmp_path / "tok.json", texts)
    run = tmp_path / "run"
    deepseek(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(tok))}",
             "--set", f"data.path={json.dumps(str(texts))}", "--set", "data.val_fraction=0.34",
             "--max-steps", "2", "--run-dir", str(run))
    assert (run / "tokenizer.json").is_file()
    said = deepseek(host, "export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert "AutoTokenizer" in said
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours = tokenizers.Tokenizer.from_file(str(tok))
    text = "the cat sat on the mat\ndef return"
    assert hf_tok(text)["input_ids"] == ours.encode(text).ids
    assert hf_tok.eos_token == SEPARATOR and hf_tok.eos_token_id == 0
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.eos_token_id == 0 and hf.config.vocab_size == ours.get_vocab_size()
    model, _, _ = load_trained(run, host=host)
    x = torch.tensor([hf_tok(text)["input_ids"]])
    with torch.no_grad():
        assert_close(hf(x).logits, model(x))


# ----------------------------------------------------------------------------- import


def random_gpt2(folder: Path, tokenizer: Path | None = None, **config: Any) -> Any:
    """A random GPT2LMHeadModel saved with save_pretrained (safetensors), with ``tokenizer``."""
    torch.manual_seed(0)
    shape = dict(vocab_size=300, n_positions=64, n_embd=48, n_layer=2, n_head=4, resid_pdrop=0.0,
                 embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**shape, **config})).eval()
    model.save_pretrained(folder)
    if tokenizer is not None:
        (folder / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    return model


@pytest.mark.parametrize("config", [{}, {"tie_word_embeddings": False, "n_inner": 80,
                                         "activation_function": "gelu_pytorch_tanh"}])
def test_import_gives_the_same_logits_and_tokens(tmp_path: Path, host: PluginHost, config: dict) -> None:
    hf = random_gpt2(tmp_path / "src", **config)
    said = deepseek(host, "import-hf", str(tmp_path / "src"), "--out", str(tmp_path / "imp"))
    assert "no tokenizer.json" in said
    ours, cfg, _ = load_trained(tmp_path / "imp" / "model.safetensors", host=host)
    assert cfg.model.name == "gpt" and cfg.model.options.tie_embeddings == config.get("tie_word_embeddings", True)
    x = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert_close(ours(x), hf(x).logits)
    expected = hf.generate(x[:, :5], max_new_tokens=20, do_sample=False, pad_token_id=0)
    got = ours.generate(x[:, :5], 20, temperature=0)
    assert torch.equal(got, expected)
    assert len(set(got[0, 5:].tolist())) > 2  # a real sequence, not one token repeated


def test_train_starts_from_the_imported_weights(tmp_path: Path, host: PluginHost) -> None:
    texts = corpus(tmp_path / "texts")
    tok = bpe_tokenizer(tmp_path / "tok.json", texts)
    hf = random_gpt2(tmp_path / "src", tok)
    deepseek(host, "import-hf", str(tmp_path / "src"), "--out", str(tmp_path / "imp"))
    assert (tmp_path / "imp" / "tokenizer.json").read_bytes() == tok.read_bytes()
    toml = (tmp_path / "imp" / "config.toml").read_text()
    assert f'tokenizer = "{tmp_path / "imp" / "tokenizer.json"}"' in toml and f'separator_token = "{SEPARATOR}"' in toml
    overrides = [*RUN, "--set", f"data.path={json.dumps(str(texts))}", "--set", "data.val_fraction=0.34"]
    deepseek(host, "train", str(tmp_path / "imp" / "config.toml"), *overrides, "--max-steps", "2",
             "--run-dir", str(tmp_path / "run"))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["step"] == 0 and "val_loss" in r)
    first = next(r for r in records if r["step"] == 1 and "loss" in r)
    config = load_config(tmp_path / "imp" / "config.toml",
                         [o for o in overrides if o.startswith(("data.", "train."))], host=host)
    dataset = build_dataset(config, host)
    val = dataset.validation_batches(1)[0]
    batch = next(iter(dataset))
    assert hf_logits_loss(hf, val["input_ids"], val["targets"])[1] == pytest.approx(start["val_loss"], rel=1e-5)
    assert hf_logits_loss(hf, batch["input_ids"], batch["targets"])[1] == pytest.approx(first["loss"], rel=1e-5)


def test_the_import_note_names_a_folder_with_a_line_break_and_an_escape_escaped(tmp_path: Path,
                                                                                 host: PluginHost) -> None:
    """'SRC has no tokenizer.json' printed the folder raw: a line break split the note, an ESC
    sequence reached the terminal."""
    random_gpt2(tmp_path / "s\nx\x1b[2J")
    said = deepseek(host, "import-hf", str(tmp_path / "s\nx\x1b[2J"), "--out", str(tmp_path / "imp"))
    assert "\x1b" not in said
    assert f"$'{tmp_path}/s\\nx\\x1b[2J' has no tokenizer.json: config.toml trains on byte tokens" in said
