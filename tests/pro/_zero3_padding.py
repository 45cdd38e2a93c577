"""ZeRO-3's partition padding is not a weight (test helper, run under torchrun by
``test_deepspeed.py``).

Trains one step of a GPT whose LayerNorm vectors have an odd length (31), so each is split into
two shares with one element of padding on rank 1; fills every share's padding with NaN (what
``torch.empty`` may hold) and records ``weights_finite()``; then sets one real weight to NaN and
records it again. Rank 0 writes ``{"padding_nan": bool, "weight_nan": bool}`` to ``argv[2]``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(config_path: str, out: str) -> None:
    import torch
    import torch.distributed as dist
    from deepspeed.utils import safe_get_local_fp32_param

    from deepseek.config.load import config_from_dict
    from deepseek.training.trainer import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        config = config_from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
        trainer = Trainer(config, run_dir=str(Path(out).parent / "run"), quiet=True)
        trainer.fit()
        strategy, rank = trainer.strategy, dist.get_rank()
        odd = [p for p in strategy.engine.module.parameters() if p.ds_numel % 2]
        assert odd, "the test model has no odd-sized parameter"
        torch.set_grad_enabled(False)
        for param in odd:
            local = safe_get_local_fp32_param(param).reshape(-1)
            real = max(0, min(local.numel(), param.ds_numel - rank * local.numel()))
            local[real:] = float("nan")
        padding_nan = strategy.weights_finite()
        if rank == 0:
            safe_get_local_fp32_param(odd[0]).reshape(-1)[0] = float("nan")
        weight_nan = strategy.weights_finite()
        if rank == 0:
            Path(out).write_text(json.dumps({"padding_nan": padding_nan, "weight_nan": weight_nan}), encoding="utf-8")
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # Leave past the C++ destructors, as deepseek launch's workers do: a process that ends with
    # DeepSpeed's or gloo's threads alive can abort in them ("terminate called without an active
    # exception"), turning a finished probe into a failed torchrun.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
