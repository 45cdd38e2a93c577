"""``deepseek eval`` of a GPT-2 imported with ``deepseek import-hf`` (made here with
``save_pretrained``, nothing downloaded): the import folder evaluates as it is, on its
``config.toml``'s data with the tokenizer beside it, and on the user's JSON lines with ``--set``;
its ``val_loss`` is transformers' own cross-entropy on the same validation batches, and
``val_perplexity`` its exp."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from _eco_cli import ok, refused  # noqa: E402
from _hf_user import jsonl, texts  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.training.build import build_dataset  # noqa: E402
from deepseek.training.inference import load_trained  # noqa: E402
from deepseek.training.weights_source import DataChoice  # noqa: E402

SEPARATOR = "<|endoftext|>"


def imported_gpt2(tmp_path: Path, host: PluginHost) -> tuple[Path, object]:
    """A random GPT-2 (vocabulary = a byte-level BPE trained here, separator id 0) saved with
    ``save_pretrained`` beside its ``tokenizer.json`` and imported to ``tmp_path/imp``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts(400, 1), trainers.BpeTrainer(
        vocab_size=270, special_tokens=[SEPARATOR], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=48, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2,
                                     bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path / "src")
    tok.save(str(tmp_path / "src" / "tokenizer.json"))
    ok(host, "import-hf", str(tmp_path / "src"), "--out", str(tmp_path / "imp"))
    return tmp_path / "imp", hf


def transformers_loss(hf: object, checkpoint: Path, choice: DataChoice, batches: int, host: PluginHost) -> float:
    """transformers' mean cross-entropy over the validation batches deepseek evaluates."""
    _, config, _ = load_trained(checkpoint, need_data=True, data=choice, host=host)
    losses = []
    for batch in build_dataset(config, host).validation_batches(batches):
        with torch.no_grad():
            logits = hf(batch["input_ids"]).logits  # type: ignore[operator]
        losses.append(torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten()).item())
    return sum(losses) / len(losses)


def test_the_import_folder_evaluates_on_the_users_files_as_transformers_does(tmp_path: Path, host: PluginHost) -> None:
    imp, hf = imported_gpt2(tmp_path, host)
    train, valid = jsonl(tmp_path / "train.jsonl", texts(200, 2)), jsonl(tmp_path / "valid.jsonl", texts(200, 3))
    overrides = ("data.name=hf", f"data.files=[{json.dumps(str(train))}]", f"data.val_files=[{json.dumps(str(valid))}]",
                 "data.seq_len=32", "data.batch_size=4", "data.eval_batches=2")
    argv = [a for o in overrides for a in ("--set", o)]
    got = json.loads(ok(host, "eval", "--checkpoint", str(imp), *argv, "--device", "cpu", "--json"))
    assert (got["weights"], got["step"], got["batches"], got["tokens"]) == ("imported", 0, 2, 256)
    expected = transformers_loss(hf, imp, DataChoice(overrides=overrides), 2, host)
    assert got["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert got["val_perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    line = ok(host, "eval", "--checkpoint", str(imp / "model.safetensors"), *argv, "--device", "cpu").splitlines()[0]
    assert line.endswith("(imported weights, model gpt)") and "val_perplexity" in line


def test_the_import_folder_evaluates_without_flags_after_it_moved(tmp_path: Path, host: PluginHost) -> None:
    imp, hf = imported_gpt2(tmp_path, host)
    moved = tmp_path / "moved"
    shutil.move(str(imp), moved)  # config.toml's data.tokenizer names the old place: the copy beside is used
    got = json.loads(ok(host, "eval", "--checkpoint", str(moved), "--batches", "1", "--device", "cpu", "--json"))
    assert got["tokens"] == 16 * 64  # config.toml: seq_len = min(128, n_positions); the default batch_size
    assert got["val_loss"] == pytest.approx(transformers_loss(hf, moved, DataChoice(), 1, host), rel=1e-5)
    _, config, _ = load_trained(moved, need_data=True, host=host)
    assert Path(config.data.options.tokenizer) == moved / "tokenizer.json"  # the BPE beside, not byte tokens
    assert config.data.options.separator_token == SEPARATOR


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path: Path, host: PluginHost) -> None:
    imp, _ = imported_gpt2(tmp_path, host)
    (imp / "config.toml").unlink()
    (imp / "tokenizer.json").unlink()  # the default data in byte tokens: 256 ids fit the vocabulary
    assert json.loads(ok(host, "eval", "--checkpoint", str(imp), "--set", "data.seq_len=32", "--batches", "1",
                         "--device", "cpu", "--json"))["tokens"] == 16 * 32
    bigger = tokenizers.Tokenizer(tokenizers.models.BPE())
    bigger.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bigger.train_from_iterator(texts(400, 4), tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=[SEPARATOR], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    bigger.save(str(tmp_path / "big.json"))
    size, vocab = bigger.get_vocab_size(), transformers.AutoConfig.from_pretrained(tmp_path / "src").vocab_size
    assert size > vocab
    assert refused(host, "eval", "--checkpoint", str(imp), "--set", f"data.tokenizer={json.dumps(str(tmp_path / 'big.json'))}",
                   "--device", "cpu") == (
        f"error: --set: the evaluation tokenizer has {size} tokens but the model's vocabulary only {vocab}; "
        "evaluate with the tokenizer the model was trained with (data.tokenizer)")
