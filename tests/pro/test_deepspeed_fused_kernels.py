"""DeepSpeed's weights and torch's fused inference kernels (``_fastpath_fit.py``, one process).

An H100 run of the tri-modal classifier under ZeRO-2 bf16 stopped at its first evaluation with
"CUDA error: misaligned address" in ``torch._transformer_encoder_layer_fwd``: DeepSpeed holds the
weights as views of flat buffers at any element offset, and the audio encoder's
``nn.TransformerEncoderLayer`` took torch's fused kernel in eval mode. The strategy turns that
kernel path off for its run and restores torch's switch at teardown. The CPU's kernel accepts
misaligned weights, so the test counts the kernel's calls: ``single`` must make some (or the
count proves nothing), ``deepspeed`` none.
"""

from __future__ import annotations

import json
from pathlib import Path

from _prohelpers import run_torchrun

PROBE = Path(__file__).with_name("_fastpath_fit.py")


def test_deepspeed_runs_no_fused_encoder_kernel_and_restores_the_switch(tmp_path: Path) -> None:
    run_torchrun([str(PROBE), str(tmp_path), "single", "deepspeed"], nproc=1, timeout=600,
                 env={"TORCH_EXTENSIONS_DIR": str(tmp_path / "torch_extensions")})
    single = json.loads((tmp_path / "single.json").read_text(encoding="utf-8"))
    deepspeed = json.loads((tmp_path / "deepspeed.json").read_text(encoding="utf-8"))
    assert single["fused_calls"] > 0, single  # validation under single takes the fused kernel
    assert deepspeed == {"fused_calls": 0, "fastpath_after": True}
