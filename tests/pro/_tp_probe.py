"""Look inside the ``tp`` strategy under torchrun (test helper for ``test_tp.py``).

Usage (under torchrun, 2 processes): ``python tests/pro/_tp_probe.py OUT.json``. Rank 0 writes
what it saw: the placements and local shapes of the sharded parameters, whether rank 0's local
``qkv`` rows are exactly its heads' q, k and v rows of the canonical weight, which parameters stay
whole, the local KV cache width, and greedy token ids decoded by the tensor-parallel model next to
those of the same weights in one process (batch of 2 prompts, past the position window so the
cache is rebuilt).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from deepseek.models.gpt import GPT, GPTConfig
    from deepseek.training.mixed_precision import Precision
    from deepseek.training.strategy import StepSettings
    from deepseek_pro.strategies.tp import TPStrategy

    torch.set_num_threads(1)
    config = GPTConfig(vocab_size=256, d_model=64, n_heads=4, n_layers=2, max_seq_len=32)
    report: dict = {}
    for sp in (False, True):
        torch.manual_seed(0)
        model = GPT(config)
        qkv = model.blocks[0].attn.qkv.weight.detach().clone()
        strategy = TPStrategy({"sequence_parallel": sp}, precision=Precision("fp32"))
        strategy.setup_environment()
        strategy.place_for_training(model, lambda params: torch.optim.AdamW(params, lr=1e-3), StepSettings())
        m = strategy.model
        placements = {name: [str(x) for x in p.placements] if isinstance(p, DTensor) else "whole"
                      for name, p in m.named_parameters() if name.startswith(("blocks.0.", "wte", "wpe", "ln_f"))}
        local = {name: list(p.to_local().shape) for name, p in m.named_parameters() if isinstance(p, DTensor)}
        mine = m.blocks[0].attn.qkv.weight.to_local()
        rank, hd, heads = dist.get_rank(), config.head_dim, config.n_heads // 2
        width = config.n_heads * hd
        rows = [qkv[part * width + rank * heads * hd: part * width + (rank + 1) * heads * hd] for part in range(3)]
        report[f"sp={sp}"] = {"placements": placements, "local": local,
                              "own_heads_qkv": bool(torch.equal(mine, torch.cat(rows)))}
    # Activation memory per layer on one rank (fp32): what autograd saves for 4 layers minus 2.
    for sp in (False, True):
        saved = [_saved_bytes(n_layers, sp) for n_layers in (2, 4)]
        report[f"per_layer_bytes sp={sp}"] = (saved[1] - saved[0]) / 2
    # Inference: greedy decoding, tensor-parallel vs the same weights in one process.
    torch.manual_seed(1)
    plain = GPT(config)
    with torch.no_grad():
        for p in plain.parameters():
            p.normal_(0, 0.3)  # random weights decode varied tokens
    reference = GPT(config)
    reference.load_state_dict(plain.state_dict())
    prompts = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(2))
    expected = reference.generate(prompts, 40, temperature=0).tolist()
    strategy = TPStrategy(None, precision=Precision("fp32"))
    strategy.setup_environment()
    split = strategy.place_for_inference(plain, StepSettings(model_name="gpt"))
    report["cache_heads"] = split.new_cache(2).keys[0].shape[1]
    report["tokens_tp"] = split.generate(prompts, 40, temperature=0).tolist()
    report["tokens_single"] = expected
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    dist.barrier()
    # The first strategy joined the process group (it owns it); the later ones found it joined, so
    # their teardown leaves it. Leave it here, and exit with os._exit (below): a process exiting
    # normally can abort in gloo's threads' destructors ("terminate called without an active
    # exception"; seen twice with two pytest-xdist workers on two cores).
    dist.destroy_process_group()


def _saved_bytes(n_layers: int, sp: bool) -> int:
    """Bytes autograd saves on this rank for one forward of a batch (3, 20), parameters and their
    copies left out (as tests/core/advise/test_estimate.py counts them in one process)."""
    import torch
    from torch.distributed.tensor import DTensor

    from deepseek.models.gpt import GPT, GPTConfig
    from deepseek.training.mixed_precision import Precision
    from deepseek.training.strategy import StepSettings
    from deepseek_pro.strategies.tp import TPStrategy

    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if isinstance(t, DTensor) else t

    torch.manual_seed(0)
    strategy = TPStrategy({"sequence_parallel": sp}, precision=Precision("fp32"))
    strategy.setup_environment()
    strategy.place_for_training(GPT(GPTConfig(d_model=64, n_heads=4, n_layers=n_layers, max_seq_len=32)),
                   lambda params: torch.optim.SGD(params, lr=0.1), StepSettings())
    params = [local(p) for p in strategy.model.parameters()]
    ptrs = {p.untyped_storage().data_ptr() for p in params}
    shapes = {tuple(p.shape) for p in params} | {tuple(p.shape)[::-1] for p in params}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        mine = local(t)
        ptr = mine.untyped_storage().data_ptr()
        if ptr not in ptrs and tuple(mine.shape) not in shapes:
            seen[ptr] = mine.untyped_storage().nbytes()
        return t

    x = torch.randint(0, 256, (3, 20))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        strategy.model(x, x)
    return sum(seen.values())


if __name__ == "__main__":
    import os

    main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # past gloo's threads' destructors, as _padded_fit.py and _train_jobs.py
