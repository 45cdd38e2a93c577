"""A model whose loss cannot train (no trainable parameters, all frozen, a detached loss, an
integer or complex loss) gets the same one line under ddp, fsdp and deepspeed on 2 gloo processes
(``_untrainable_fit.py``) as on one device (rank 0's), and leaves no run folder: the rules are
the engine's (``build_model``: trainable parameters) and the base strategy's step
(``forward_backward``: the loss's dtype and grad_fn), which each of these strategies runs before
its own backward; not torch's error from DDP's constructor or ``backward``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import run_torchrun
from _untrainable_fit import MODELS, attempt

PROBE = Path(__file__).with_name("_untrainable_fit.py")
STRATEGIES = ("ddp", "fsdp", "deepspeed")


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, object]]]:
    out = tmp_path_factory.mktemp("untrainable")
    run_torchrun([str(PROBE), str(out), *STRATEGIES], timeout=600)
    return json.loads((out / "messages.json").read_text())


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_loss_that_cannot_train_is_the_single_device_line(seen: dict[str, dict[str, dict[str, object]]],
                                                             strategy: str, model: str, tmp_path: Path) -> None:
    single = attempt(tmp_path, "single", model)
    assert single["type"] == "UsageError" and "\n" not in str(single["message"]) and not single["left"]
    assert seen[strategy][model] == single
    # the model named as every check names it: the engine's line where nothing trains (the user's),
    # the script's line for its model's broken answer (a detached or non-float loss: calls.scripts_own)
    assert str(single["message"]).startswith("model 'script': " if model in ("NoWeights", "Frozen") else
                                             "the model given to deepseek.fit: forward returned ")
