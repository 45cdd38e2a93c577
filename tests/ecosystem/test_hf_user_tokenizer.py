"""A Hugging Face user's tokenizer and model, as they bring them (made here, nothing downloaded): a
``transformers`` tokenizer folder whose end-of-document token is ``</s>`` (declared as
``eos_token`` in its ``tokenizer_config.json``), and a GPT-2 folder with such a tokenizer,
imported, sampled and exported back with its eos/bos ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

datasets = pytest.importorskip("datasets")
tokenizers = pytest.importorskip("tokenizers")

from _eco_cli import ok, refused  # noqa: E402
from _hf_user import SMALL, jsonl, texts  # noqa: E402

from deepseek.config.load import config_from_dict, load_config  # noqa: E402
from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.training.build import build_dataset  # noqa: E402

# ----------------------------------------------------------------------------- tokenizer folders


def transformers_folder(folder: Path, corpus: list[str], *, config: bool = True,
                        extra: tuple[str, ...] = ()) -> Path:
    """A byte-level BPE with ``<s>``, ``</s>``, ``<pad>`` (no ``<|endoftext|>``; ``extra``
    special tokens after them), saved as a ``transformers`` tokenizer folder: ``tokenizer.json``
    and ``tokenizer_config.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>", *extra],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    if config:
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
             "pad_token": "<pad>"}))
    return folder


def test_a_transformers_tokenizer_folder_is_a_tokenizer_with_its_eos_as_separator(host: PluginHost,
                                                                                 tmp_path: Path) -> None:
    corpus = texts(200, 7)
    folder = transformers_folder(tmp_path / "tok", corpus)
    files = {"files": [str(jsonl(tmp_path / "a.jsonl", corpus))], "val_files": [str(jsonl(tmp_path / "v.jsonl",
                                                                                          texts(30, 8)))]}
    config = config_from_dict({"data": {"name": "hf", "tokenizer": str(folder), **files}}, host=host)
    options = config.data.options
    assert options.tokenizer == str((folder / "tokenizer.json").resolve()) and options.separator_token == "</s>"
    size = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()
    assert config.model.options.vocab_size == size and 257 < size <= 300
    ds = build_dataset(config, host)
    assert ds.tokenizer.separator == 1  # </s>: special tokens <s>, </s>, <pad> are ids 0, 1, 2
    assert "separator '</s>' = id 1" in ok(host, "tokenizer", "info", str(folder))
    # an explicit separator is kept; without a tokenizer_config.json the default must be in the file
    kept = config_from_dict({"data": {"name": "hf", "tokenizer": str(folder), "separator_token": "<pad>", **files}},
                            host=host)
    assert kept.data.options.separator_token == "<pad>"
    # the declared eos wins over an <|endoftext|> the file also has (the default lost before)
    both = transformers_folder(tmp_path / "both", corpus, extra=("<|endoftext|>",))
    chosen = config_from_dict({"data": {"name": "hf", "tokenizer": str(both), **files}}, host=host)
    assert chosen.data.options.separator_token == "</s>"
    bare = transformers_folder(tmp_path / "bare", corpus, config=False)
    line = refused(host, "tokenizer", "info", str(bare))
    assert "no document-separator token '<|endoftext|>'" in line and "eos_token" in line
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "vocab.json").write_text("{}")
    line = refused(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(tmp_path / 'slow'))}",
                   "--run-dir", str(tmp_path / "r"))
    assert "has no tokenizer.json" in line and "use_fast=True" in line


@pytest.mark.parametrize(("content", "words"), [
    (b'{"eos_token": "</s>", "pad_tok', "cannot be read as JSON"),  # truncated
    (b"[1, 2]", "expected a JSON object of the tokenizer's settings, got list"),
    (b'{"eos_token": 1}', "eos_token must be a token (a string, or an object with its \"content\"), got 1"),
    (b'{"eos_token": {"id": 1}}', 'eos_token must be a token'),
])
def test_a_damaged_tokenizer_config_is_one_line_not_another_separator(host: PluginHost, tmp_path: Path,
                                                                      content: bytes, words: str) -> None:
    """The tokenizer has both </s> (its declared eos) and <|endoftext|>: a damaged tokenizer_config.json
    was passed over, so the run silently packed documents with <|endoftext|> instead."""
    corpus = texts(200, 7)
    folder = transformers_folder(tmp_path / "tok", corpus, extra=("<|endoftext|>",))
    (folder / "tokenizer_config.json").write_bytes(content)
    line = refused(host, "train", *SMALL, "--set", f"data.tokenizer={json.dumps(str(folder))}",
                   "--set", f"data.files={json.dumps([str(jsonl(tmp_path / 'a.jsonl', corpus))])}",
                   "--run-dir", str(tmp_path / "run"))
    assert line.startswith(f"error: data.tokenizer: {folder / 'tokenizer_config.json'}: ") and words in line
    assert not (tmp_path / "run").exists()
    assert words in refused(host, "tokenizer", "info", str(folder))
    # import-hf refuses it before writing, instead of copying it beside the imported tokenizer
    transformers = pytest.importorskip("transformers")
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=32,
                                                         vocab_size=300)).save_pretrained(str(folder))
    assert words in refused(host, "import-hf", str(folder), "--out", str(tmp_path / "imp"))
    assert not (tmp_path / "imp").exists()
    # a transformers AddedToken object is a token
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"__type": "AddedToken", "content": "</s>"}}))
    assert "separator '</s>' = id 1" in ok(host, "tokenizer", "info", str(folder))


# ----------------------------------------------------------------------------- GPT-2 with </s>


def test_import_sample_and_export_keep_the_eos_token(host: PluginHost, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    corpus = texts(200, 9)
    src = transformers_folder(tmp_path / "gpt", corpus)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=32, vocab_size=300,
                                  bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(str(src))
    ok(host, "import-hf", str(src), "--out", str(tmp_path / "imp"))
    assert (tmp_path / "imp" / "tokenizer_config.json").is_file()
    assert load_config(tmp_path / "imp" / "config.toml", host=host).data.options.separator_token == "</s>"
    ok(host, "generate", "--checkpoint", str(tmp_path / "imp" / "model.safetensors"), "the cat",
       "--max-new-tokens", "3", "--temperature", "0")
    ok(host, "export", "--checkpoint", str(tmp_path / "imp" / "model.safetensors"), "--format", "hf",
       "--out", str(tmp_path / "back"))
    back = json.loads((tmp_path / "back" / "config.json").read_text())
    assert (back["bos_token_id"], back["eos_token_id"]) == (1, 1)
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "back"))
    assert tok.eos_token == "</s>" and tok.eos_token_id == 1
    # a run trained on the import exports the same ids
    run = tmp_path / "run"
    ok(host, "train", str(tmp_path / "imp" / "config.toml"), *SMALL[12:],
       "--set", f"data.files={json.dumps([str(jsonl(tmp_path / 'a.jsonl', corpus))])}",
       "--set", "data.name=hf", "--max-steps", "1", "--run-dir", str(run))
    ok(host, "export", "--checkpoint", str(run), "--format", "hf", "--out", str(tmp_path / "run-hf"))
    assert json.loads((tmp_path / "run-hf" / "config.json").read_text())["eos_token_id"] == 1
    assert json.loads((tmp_path / "run-hf" / "tokenizer_config.json").read_text())["eos_token"] == "</s>"


@pytest.mark.parametrize("kind", ["wordpiece", "metaspace"])
def test_a_continuation_keeps_the_space_a_word_level_decoder_puts_between_words(tmp_path: Path, kind: str) -> None:
    """Decoded apart from its prompt, a WordPiece or Metaspace continuation lost the space the
    decoder puts between words: "the cat" continued by "the dog" printed "the catthe dog"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from deepseek.data.bpe import load_bpe

    specials = ["<|endoftext|>", "[UNK]"]
    if kind == "wordpiece":
        hf = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        hf.pre_tokenizer, hf.decoder = pre_tokenizers.Whitespace(), decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=80, special_tokens=specials)
    else:
        hf = Tokenizer(models.BPE(unk_token="[UNK]"))
        hf.pre_tokenizer, hf.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=80, special_tokens=specials)
    hf.train_from_iterator(["the cat sat on the dog", "a dog and the cat"] * 20, trainer)
    hf.save(str(tmp_path / "t.json"))
    tok = load_bpe(str(tmp_path / "t.json"), "<|endoftext|>", where="test")
    prompt = tok.prompt_ids("the cat")
    new = [*tok.encode("the dog"), tok.separator, *tok.encode("sat")]  # the document ends at the separator
    whole = hf.decode(prompt + tok.encode("the dog"), skip_special_tokens=False)
    assert "the cat" + tok.decode_continuation(prompt, new) == whole == "the cat the dog"
