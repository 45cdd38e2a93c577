"""Static-cache CUDA-graph decoding on one GPU (issue 20): tokens against eager, and step latency.

    python benchmarks/decode_gpu.py --out OUT.json [--new-tokens 200] [--parts tokens,bench,bf16,determinism]

``tokens``: the `small` preset (random weights, seed 0), 128-token random prompts, 200 new tokens:
``GPT.generate`` eager (the KV-cache loop) against ``generate(static=StaticDecoders())`` (static
cache, compiled step, one CUDA graph per step with the sampling), greedy and sampled (temperature
0.8, top-k 50, seed 7), batch 1 and 32, fp32 (``bf16`` part: the same in bf16). Reports whether
the tokens are identical, the first differing column, the first call's setup (compile + capture)
and the steady wall time of a 200-token call.

``bench``: ``run_latency`` decode mode (one cached step after a 128-token prompt, median of 50),
eager / torch.compile / torch.compile reduce-overhead / deepseek static-cache graph in one process,
batch 1 and 32.

``determinism``: bf16, batch 32, greedy: eager, the graph path, the graph path after zeroing the
cache, and the cursor step without graph or compile, each run several times against itself.

Each part is written to ``--out`` as soon as it is done (a later failure keeps the earlier parts).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any

import torch


def _write(out: Path, record: dict[str, Any]) -> None:
    from deepseek import durable

    durable.write_text(out, json.dumps(record, indent=1))


def _compare(a: torch.Tensor, b: torch.Tensor, prompt_len: int) -> dict[str, Any]:
    a, b = a[:, prompt_len:].cpu(), b[:, prompt_len:].cpu()
    same = a == b
    differing = (~same).any(dim=0).nonzero()
    return {"identical": bool(same.all()), "first_differing_column": int(differing[0]) if len(differing) else None,
            "equal_fraction": round(float(same.float().mean()), 6),
            "rows_identical": int(same.all(dim=1).sum()), "rows": int(a.size(0))}


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args)
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


def _generate(model: Any, prompt: torch.Tensor, new: int, temperature: float, top_k: int | None,
              static: Any) -> torch.Tensor:
    gen = torch.Generator(device="cuda").manual_seed(7)
    return model.generate(prompt, new, temperature=temperature, top_k=top_k, generator=gen, static=static)


def tokens_part(dtype: torch.dtype, new: int) -> list[dict[str, Any]]:
    from deepseek.models.static_decoding import StaticDecoders
    from deepseek.plugins.registry import create_model

    torch.manual_seed(0)
    model = create_model("small").to("cuda", dtype).eval()
    rows = []
    for batch in (1, 32):
        prompt = torch.randint(0, model.config.vocab_size, (batch, 128), generator=torch.Generator().manual_seed(batch))
        prompt = prompt.cuda()
        pool = StaticDecoders()
        # Eager once untimed: CUDA, cuBLAS and (bf16) cuDNN attention plans per length set up.
        _generate(model, prompt, new, 0.0, None, None)
        for temperature, top_k in ((0.0, None), (0.8, 50)):
            args = (model, prompt, new, temperature, top_k)
            eager, eager_s = _timed(_generate, *args, None)
            first, first_s = _timed(_generate, *args, pool)
            ours, ours_s = _timed(_generate, *args, pool)
            again, _ = _timed(_generate, *args, pool)
            rows.append({
                "dtype": str(dtype).removeprefix("torch."), "batch": batch, "new_tokens": new,
                "temperature": temperature, "top_k": top_k,
                **_compare(eager, ours, prompt.size(1)),
                "first_call_identical": bool(torch.equal(first, ours)),
                "repeat_identical": bool(torch.equal(ours, again)),
                "eager_s": round(eager_s, 4), "static_first_call_s": round(first_s, 2), "static_s": round(ours_s, 4),
                "eager_ms_per_token": round(eager_s / new * 1e3, 3),
                "static_ms_per_token": round(ours_s / new * 1e3, 3),
                "static_cache_lengths": pool.lengths(),  # (batch, positions): sized to prompt + new tokens
            })
            print(json.dumps(rows[-1]), flush=True)
        # The same graph around the eager step (no inductor): capture only, no compile.
        plain = StaticDecoders(compile_step=False)
        first, first_s = _timed(_generate, model, prompt, new, 0.0, None, plain)
        ours, ours_s = _timed(_generate, model, prompt, new, 0.0, None, plain)
        eager = _generate(model, prompt, new, 0.0, None, None)
        rows.append({"dtype": str(dtype).removeprefix("torch."), "batch": batch, "new_tokens": new,
                     "temperature": 0.0, "top_k": None, "compile_step": False,
                     **_compare(eager, ours, prompt.size(1)),
                     "static_first_call_s": round(first_s, 2), "static_s": round(ours_s, 4),
                     "static_ms_per_token": round(ours_s / new * 1e3, 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def determinism_part(new: int) -> dict[str, Any]:
    """bf16, batch 32, greedy: is each path the same run to run, and does stale cache content
    (the positions past the mask) change anything?"""
    from deepseek.models.static_decoding import StaticDecoders
    from deepseek.plugins.registry import create_model

    torch.manual_seed(0)
    model = create_model("small").to("cuda", torch.bfloat16).eval()
    prompt = torch.randint(0, model.config.vocab_size, (32, 128), generator=torch.Generator().manual_seed(32)).cuda()
    eager = [_generate(model, prompt, new, 0.0, None, None) for _ in range(3)]
    pool = StaticDecoders()
    ours = [_generate(model, prompt, new, 0.0, None, pool) for _ in range(3)]
    zeroed = []
    for _ in range(2):
        for decoder in pool._decoders.values():
            for t in decoder.cache.keys + decoder.cache.values:
                t.zero_()
        zeroed.append(_generate(model, prompt, new, 0.0, None, pool))
    plain = StaticDecoders(graphs=False, compile_step=False)  # the cursor step, eager kernels, no graph
    cursor = [_generate(model, prompt, new, 0.0, None, plain) for _ in range(2)]
    same = lambda a, b: bool(torch.equal(a, b))  # noqa: E731
    return {
        "eager_runs_equal": [same(eager[0], e) for e in eager[1:]],
        "static_runs_equal": [same(ours[0], o) for o in ours[1:]],
        "static_zeroed_cache_equal_first": [same(ours[0], z) for z in zeroed],
        "zeroed_runs_equal": same(zeroed[0], zeroed[1]),
        "cursor_eager_runs_equal": same(cursor[0], cursor[1]),
        "cursor_eager_vs_eager": _compare(eager[0], cursor[0], 128),
        "static_vs_eager": _compare(eager[0], ours[0], 128),
    }


def bench_part(batch: int) -> dict[str, Any]:
    from deepseek.bench.latency import run_latency
    from deepseek.plugins.registry import create_model

    torch.manual_seed(0)
    with torch.device("cpu"):
        model = create_model("small")
    result = run_latency(model, batch=batch, seq=128, device="cuda", dtype="float32", mode="decode", runs=50,
                         warmup=3, only=["torch.compile", "torch.compile reduce-overhead",
                                         "deepseek static-cache graph"],
                         progress=lambda m: print(m, flush=True))
    for row in result.rows:
        print(f"batch {batch} {row.name}: {row.median_ms:.3f} ms (p10 {row.p10_ms:.3f}, p90 {row.p90_ms:.3f}), "
              f"err {row.max_rel_error:.1e}, setup {row.setup_s} s", flush=True)
    return result.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--parts", default="tokens,bench,bf16,determinism")
    args = parser.parse_args()
    record: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                              "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "errors": {}}
    steps = {
        "tokens": lambda: tokens_part(torch.float32, args.new_tokens),
        "bench": lambda: {"batch1": bench_part(1), "batch32": bench_part(32)},
        "bf16": lambda: tokens_part(torch.bfloat16, args.new_tokens),
        "determinism": lambda: determinism_part(args.new_tokens),
    }
    for part in args.parts.split(","):
        start = time.perf_counter()
        try:
            record[part] = steps[part]()
        except Exception as exc:  # noqa: BLE001 - a failed part is recorded, the others still run
            traceback.print_exc()
            record["errors"][part] = f"{type(exc).__name__}: {exc}"
        record[f"{part}_s"] = round(time.perf_counter() - start, 1)
        _write(args.out, record)
        print(f"part {part}: {record[f'{part}_s']} s", flush=True)


if __name__ == "__main__":
    main()
