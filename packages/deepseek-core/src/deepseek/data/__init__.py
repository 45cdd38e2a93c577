"""deepseek.data: byte tokenizer, text corpora (embedded stdlib sources or user files) and
packed, resumable batches.

``deepseek.data.tokenizer`` and ``deepseek.data.corpus`` do not import torch; the loader does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepseek.data.corpus import TextCorpus, open_corpus, path_corpus, stdlib_corpus
from deepseek.data.tokenizer import SEPARATOR, ByteTokenizer

if TYPE_CHECKING:
    from deepseek.data.loader import PackedBatches as PackedBatches

__all__ = [
    "SEPARATOR",
    "ByteTokenizer",
    "PackedBatches",
    "TextCorpus",
    "open_corpus",
    "path_corpus",
    "stdlib_corpus",
]


def __getattr__(name: str) -> Any:
    if name == "PackedBatches":
        from deepseek.data.loader import PackedBatches

        return PackedBatches
    raise AttributeError(f"module 'deepseek.data' has no attribute {name!r}")
