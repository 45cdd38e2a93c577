"""Issue 14's tokenizer figure: byte tokens against a BPE tokenizer on the embedded corpus (the
Python standard library, what ``deepseek train`` reads by default), at the same training compute,
compared by validation bits per byte.

    python benchmarks/tokenizer_bpb.py --out /tmp/tokenizer-bpb [--seeds 1 2 3] [--vocab 4096] [--jobs 2]

1. ``deepseek tokenizer train --vocab-size V`` learns the BPE tokenizer from the corpus' training
   split only (the split every run uses; validation files are never seen).
2. Both models are ``deepseek train``'s default model (the ``tiny`` preset, 128 wide, 4 layers, 4
   heads, tied embeddings), the same batch (16 x 128 tokens), optimizer, warmup and cosine
   schedule; only the vocabulary differs (256 or V), so the BPE model's embedding/head is larger.
3. Same training compute: FLOPs = steps x tokens/step x ``GPT.flops_per_token(seq_len)`` (the
   project's counter: 6 N + 12 L d T, N counting the tied embedding as the LM head's matmul). The
   byte model trains ``--byte-steps`` (the demo's 600); the BPE model ``round(600 x F_byte / F_bpe)``
   steps, equal FLOPs to within one step (both printed).
4. Both are evaluated by ``deepseek eval --batches N`` (its ``val_bits_per_byte``) on the same
   stretch of the validation split: the byte model on ``--eval-batches`` batches, the BPE model on
   the fewest batches covering at least as many bytes of the same validation stream.

Each run uses one torch thread (``OMP_NUM_THREADS=1``); ``--jobs`` runs go side by side. Writes
one JSON line per run to ``--results`` (default benchmarks/results/tokenizer-bpb-<date>.jsonl)
and prints the table of BENCHMARKS.md (mean +- sample std over seeds).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _cli import deepseek  # benchmarks/_cli.py: run as python benchmarks/<script>.py

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--precision", "fp32", "--set", 'strategy.device="cpu"', "--set", "train.eval_interval=0",
          "--set", "data.eval_batches=1", "--set", "logging.plot=false", "--set", "checkpoint.interval=0",
          "--quiet"]
"""Train at the defaults but evaluate once (at the end, one batch) and plot nothing: ``eval`` measures."""


def setting(tokenizer: str) -> list[str]:
    return ["--set", f"data.tokenizer={json.dumps(tokenizer)}"] if tokenizer else []


def shape(tokenizer: Path | None, eval_batches: int) -> dict[str, Any]:
    """Parameters, FLOPs per token, tokens per step and the validation text of ``eval_batches``
    batches, of the default config with this tokenizer (the dataset's own counts)."""
    from deepseek.config.load import config_from_dict
    from deepseek.models.gpt import GPT
    from deepseek.training.build import build_dataset

    data = {"tokenizer": str(tokenizer)} if tokenizer else {}
    cfg = config_from_dict({"data": data})
    model = GPT(cfg.model.options)
    dataset = build_dataset(cfg)
    texts = [dataset.predicted_text(b) for b in dataset.validation_batches(eval_batches)]
    seq = cfg.data.options.seq_len
    return {"vocab": cfg.model.options.vocab_size, "params": model.num_parameters(),
            "flops_per_token": model.flops_per_token(seq), "tokens_per_step": cfg.data.batch_size * seq,
            "seq_len": seq, "texts": texts}


def batches_covering(texts: list[Any], n_bytes: int) -> int:
    """The fewest leading batches whose predicted text holds at least ``n_bytes`` bytes."""
    total = 0
    for i, t in enumerate(texts, 1):
        total += t.bytes
        if total >= n_bytes:
            return i
    raise SystemExit(f"the validation batches hold only {total} bytes; need {n_bytes} (raise the search limit)")


def train_and_eval(job: dict[str, Any]) -> dict[str, Any]:
    run = job["run"]
    t0 = time.perf_counter()
    out = deepseek("train", *setting(job["tokenizer_file"]), "--set", f"train.seed={job['seed']}",
                   "--max-steps", str(job["steps"]), *COMMON, "--run-dir", str(run))
    wall = time.perf_counter() - t0
    trained = re.search(r"in (\d+) s", out)
    values = json.loads(deepseek("eval", "--checkpoint", str(run), "--batches", str(job["eval_batches"]),
                                 "--json", "--device", "cpu"))
    return {**{k: v for k, v in job.items() if k != "run"}, "run": str(run),
            "train_seconds": int(trained.group(1)) if trained else None, "wall_seconds": round(wall, 1),
            "val_loss": values["val_loss"], "val_bits_per_byte": values["val_bits_per_byte"]}


def hardware() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{model}, {os.cpu_count()} cores (shared), 1 torch thread per run"


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="Work folder (tokenizers, run folders).")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--vocab", type=int, nargs="+", default=[4096], help="BPE vocabulary sizes to compare.")
    p.add_argument("--byte-steps", type=int, default=600, help="Steps of the byte model (the demo's 600).")
    p.add_argument("--eval-batches", type=int, default=128, help="Validation batches of the byte model.")
    p.add_argument("--jobs", type=int, default=2, help="Runs side by side (one torch thread each).")
    p.add_argument("--results", type=Path, default=None)
    a = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    date = datetime.date.today().isoformat()
    results = a.results or REPO / "benchmarks" / "results" / f"tokenizer-bpb-{date}.jsonl"
    a.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    kinds: list[dict[str, Any]] = [{"tokenizer": None, "name": "bytes"}]
    for v in a.vocab:
        path = a.out / f"tokenizer-{v}.json"
        t0 = time.perf_counter()
        report = deepseek("tokenizer", "train", "--vocab-size", str(v), "--out", str(path))
        print(f"tokenizer {v}: {time.perf_counter() - t0:.0f} s; {report.strip().splitlines()[-1]}", flush=True)
        kinds.append({"tokenizer": path, "name": f"bpe-{v}"})
    byte_shape = shape(None, a.eval_batches)
    eval_bytes = sum(t.bytes for t in byte_shape["texts"])
    budget = a.byte_steps * byte_shape["tokens_per_step"] * byte_shape["flops_per_token"]
    jobs = []
    for kind in kinds:
        s = byte_shape if kind["tokenizer"] is None else shape(kind["tokenizer"], a.eval_batches)
        n_eval = a.eval_batches if kind["tokenizer"] is None else batches_covering(s["texts"], eval_bytes)
        texts = s["texts"][:n_eval]
        steps = round(budget / (s["tokens_per_step"] * s["flops_per_token"]))
        row = {"date": date, "tokenizer": kind["name"], "vocab": s["vocab"], "params": s["params"], "steps": steps,
               "tokens_per_step": s["tokens_per_step"], "seq_len": s["seq_len"],
               "flops_per_token": s["flops_per_token"],
               "train_flops": steps * s["tokens_per_step"] * s["flops_per_token"], "eval_batches": n_eval,
               "eval_tokens": sum(t.tokens for t in texts), "eval_bytes": sum(t.bytes for t in texts)}
        row["bytes_per_token"] = row["eval_bytes"] / row["eval_tokens"]
        jobs += [{**row, "seed": seed, "tokenizer_file": str(kind["tokenizer"] or ""),
                  "run": a.out / "runs" / f"{kind['name']}-s{seed}"} for seed in a.seeds]
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(train_and_eval, jobs))
    env = {"hardware": hardware(), "python": platform.python_version(), "torch": _torch_version(),
           "command": " ".join(["python", *sys.argv])}
    rows = [{**r, **env} for r in rows]
    from deepseek import durable

    durable.write_text(results, "".join(json.dumps(r) + "\n" for r in rows))

    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f} s; rows: {results}")
    print("| tokenizer | vocab | params | steps | tokens/step | bytes/token (val) | training FLOPs "
          "| val loss / token (nats) | val bits per byte |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["tokenizer"] for r in rows):
        group = [r for r in rows if r["tokenizer"] == name]
        r = group[0]
        print(f"| {name} | {r['vocab']:,} | {r['params']:,} | {r['steps']} | {r['tokens_per_step']:,} "
              f"| {r['bytes_per_token']:.3f} | {r['train_flops']:.3e} | {mean_std([g['val_loss'] for g in group])} "
              f"| {mean_std([g['val_bits_per_byte'] for g in group])} |")
    print(f"validation text evaluated: {', '.join(f'{r}: {n:,} bytes' for r, n in _eval_bytes(rows).items())}; "
          f"ln 2 = {math.log(2):.6f}")


def _eval_bytes(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["tokenizer"]: r["eval_bytes"] for r in rows}


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


if __name__ == "__main__":
    main()
