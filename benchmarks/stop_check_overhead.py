"""What the end-of-sample check costs serving: ``serve`` of a random-weight ``small`` GPT with CUDA
graphs, every row decoding all its tokens (random weights rarely end a row), with the check every
``CHECK_EVERY`` tokens (one device read each time) against none. Run on a CUDA machine:
``python benchmarks/stop_check_overhead.py`` prints one JSON line per setting."""

from __future__ import annotations

import json
import time

import torch

from deepseek.data.tokenizer import ByteTokenizer
from deepseek.models.gpt import GPT
from deepseek.models.presets import preset_config
from deepseek.models.static_decoding import StaticDecoders
from deepseek.training import stopping
from deepseek.training.serving import serve


def main() -> None:
    torch.manual_seed(0)
    model = GPT(preset_config("small")).cuda().eval()
    prompts = [f"def f{i}(x):" for i in range(32)]  # one token length: one batch of 32
    static = StaticDecoders(compile_step=False)
    for every in (10**9, stopping.CHECK_EVERY, 10**9, stopping.CHECK_EVERY):
        stopping.CHECK_EVERY = every
        serve(model, prompts, tokenizer=ByteTokenizer(), max_new_tokens=32, temperature=0.0, top_k=None,
              static=static)  # warm: capture
        torch.cuda.synchronize()
        start = time.perf_counter()
        served = serve(model, prompts, tokenizer=ByteTokenizer(), max_new_tokens=512, temperature=0.0, top_k=None,
                       static=static)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(json.dumps({"check_every": every if every < 10**9 else None, "new_tokens": served.new_tokens,
                          "seconds": round(seconds, 4), "tokens_per_s": round(served.new_tokens / seconds, 1)}))


if __name__ == "__main__":
    main()
