"""`deepseek generate` on a model whose vocabulary is larger than the byte tokenizer's and that
has no tokenizer.json (an imported GPT-2 without its tokenizer, a byte run with vocab_size > 256):
one line saying where the tokenizer must be, not a decoding crash."""

from __future__ import annotations

from pathlib import Path

from hostile_cli import TINY, assert_refused, invoke

from deepseek.plugins.host import PluginHost


def test_generate_without_a_tokenizer_for_a_larger_vocabulary_is_one_line(
    tmp_path: Path, core_host: PluginHost, one_thread: None
) -> None:
    run = tmp_path / "run"
    trained = invoke(["train", *TINY, "--set", "model.vocab_size=300", "--run-dir", str(run)], core_host)
    assert trained.code == 0, trained.stderr
    refused = invoke(["generate", "--checkpoint", str(run), "--max-new-tokens", "4", "def "], core_host)
    assert_refused(refused, ["the model has 300 token ids but no tokenizer.json was found with it",
                             "put the tokenizer.json it was trained with in its run folder"])
