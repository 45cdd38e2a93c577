"""Serving a batch of prompts with one command: ``deepseek generate --prompts FILE``.

Prompts are encoded with the run's tokenizer and decoded together in batches of up to
``batch_size`` prompts *of the same token length* (the GPT attends without padding masks, so
prompts of different lengths go to different batches; greedy decoding of a prompt is the same
whatever its batch). Each batch is one KV-cache ``generate`` call; the first sampled column's
arrival gives the batch's time to first token (the prefill), the whole call the decode rate.
Under ``deepseek launch`` with a strategy every rank serves the same batches (``tp``: each rank
computes its own heads), so the figures are the job's.
"""

from __future__ import annotations

import contextlib
import errno
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepseek.errors import UsageError
from deepseek.parsing import UnreadableFile, read_text

if TYPE_CHECKING:
    from deepseek.data.tokenizer import Tokenizer

MAX_PROMPTS_BYTES = 64 << 20
"""The largest ``--prompts`` file read (it is read whole)."""


@dataclass
class Served:
    """The continuations of the prompts (in prompt order) and what serving them measured."""

    texts: list[str]
    batches: int = 0
    new_tokens: int = 0
    """Tokens generated over every prompt."""
    seconds: float = 0.0
    """Wall time of every ``generate`` call together."""
    first_token_s: list[float] = field(default_factory=list)
    """Per batch: seconds from the call to its first sampled token (prefill)."""

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of wall time."""
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: prompts, batches, tokens, tokens/s and the median time to first token."""
        ttft = statistics.median(self.first_token_s) * 1e3 if self.first_token_s else 0.0
        return (f"served {len(self.texts)} prompts in {self.batches} batches: {self.new_tokens} new tokens in "
                f"{self.seconds:.2f} s ({self.tokens_per_s:,.1f} tokens/s), time to first token {ttft:.1f} ms "
                "(median over batches)")


def read_prompts(path: str | Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, one prompt each, or of a ``.jsonl`` file one JSON
    prompt each (one line naming the file when it cannot be read or holds none)."""
    p = Path(path)
    try:  # the file's kind and size are checked on the descriptor read: the path may be swapped after a check
        text = read_text(p, MAX_PROMPTS_BYTES)
    except UnreadableFile as exc:
        what = f"larger than {MAX_PROMPTS_BYTES >> 20} MiB" if exc.errno == errno.EFBIG else "not a regular file (a device, FIFO or socket)"
        raise UsageError(f"--prompts: {p} is {what}; pass a text file with one prompt per line") from None
    except FileNotFoundError as exc:
        raise UsageError(f"--prompts: {p} does not exist; pass a text file with one prompt per line") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"--prompts: {p} is a folder; pass a text file with one prompt per line") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"--prompts: {p} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save it as UTF-8") from exc
    except OSError as exc:
        raise UsageError(f"--prompts: cannot read {p} ({exc.strerror}); check the path and permissions") from exc
    if p.suffix == ".jsonl":
        prompts = _json_prompts(p, text)
    else:
        prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts: {p} holds no prompt; write one prompt per line")
    return prompts


def _json_prompts(path: Path, text: str) -> list[str]:
    """The prompts of a ``.jsonl`` file: one JSON string, or object with a ``"prompt"`` string, per
    non-blank line (so a prompt may hold line breaks)."""
    from deepseek.parsing import loads_json

    prompts = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = loads_json(line)
        except ValueError as exc:  # JSONDecodeError, or nested past the parser's limit
            raise UsageError(f"--prompts: {path}:{n}: not JSON ({getattr(exc, 'msg', exc)}); a .jsonl prompts file holds one JSON "
                             'string or {"prompt": "..."} per line') from None
        if isinstance(value, dict):
            value = value.get("prompt")
        if not isinstance(value, str):
            raise UsageError(f"--prompts: {path}:{n}: not a prompt; a .jsonl prompts file holds one JSON string or "
                             '{"prompt": "..."} per line')
        prompts.append(value)
    return prompts


def serve(
    model: nn.Module,
    prompts: list[str],
    *,
    tokenizer: Tokenizer,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 0,
    batch_size: int = 32,
    static: Any = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    repetition_penalty: float = 1.0,
    model_calls: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
) -> Served:
    """Continue every prompt (see the module docstring); ``tokenizer`` as checked by
    :func:`deepseek.training.inference.generating_tokenizer`. Batch ``i`` samples with a
    generator seeded ``seed + i``. ``static``: the
    :class:`~deepseek.models.static_decoding.StaticDecoders` to decode with (``None``: eager;
    one decoder, and on CUDA one captured graph, per batch size and cache length, reused across
    batches); ``model_calls``: the block around ``model.generate``
    (:func:`deepseek.training.inference.served_calls`; ``None``: nothing is blamed)."""
    from deepseek.models.sampling import sampling_arguments
    from deepseek.plugins.calls import blame_for
    from deepseek.training.stopping import Stopped, Stopping, check_stops, cut_at_stop

    if batch_size < 1:
        raise UsageError(f"--batch-size: must be >= 1, got {batch_size}")
    extra = sampling_arguments(model, top_p=top_p, repetition_penalty=repetition_penalty)
    stops = check_stops(stop)
    calls = model_calls or blame_for(None, None)
    encoded = [tokenizer.prompt_ids(p) for p in prompts]
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    batches = [rows[k:k + batch_size] for rows in by_length.values() for k in range(0, len(rows), batch_size)]
    device = next(model.parameters()).device
    served = Served(texts=[""] * len(prompts), batches=len(batches))
    for b, rows in enumerate(batches):
        idx = torch.tensor([encoded[i] for i in rows], dtype=torch.long, device=device)
        gen = torch.Generator(device=device).manual_seed(seed + b)
        first: list[float] = []
        start = time.perf_counter()

        def on_token(column: torch.Tensor, first: list[float] = first, start: float = start) -> None:
            if not first:
                column.cpu()  # waits for the device: the prefill and the first sample are done
                first.append(time.perf_counter() - start)

        stopping = Stopping(tokenizer, stops, then=on_token)
        with calls("generate"):  # Stopped, raised in the model's loop, is caught inside
            try:
                new = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=gen,
                                     on_token=stopping, static=static, **extra)[:, idx.size(1):].cpu()
            except Stopped:  # every prompt of the batch ended: its remaining steps are not decoded
                new = stopping.generated().cpu()
        served.seconds += time.perf_counter() - start
        served.first_token_s.extend(first)
        served.new_tokens += new.numel()
        for row, i in enumerate(rows):
            served.texts[i] = cut_at_stop(tokenizer.decode_continuation(encoded[i], new[row].tolist()), stops)
    return served
