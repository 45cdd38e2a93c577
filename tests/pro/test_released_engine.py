"""After teardown a sharded strategy has dropped its engine (``release_engine``, docs/distributed.md
"After the run"): ``unwrapped_model()`` then refuses in one line, from the base class's
``engine_held``, instead of a bare assert or an AttributeError on None. In process, one gloo rank."""

from __future__ import annotations

import pytest
import torch
from _prohelpers import one_rank_group

import deepseek
from deepseek.errors import UsageError
from deepseek.training.mixed_precision import Precision
from deepseek.training.strategy import StepSettings


@pytest.mark.parametrize("name", ["fsdp", "tp"])
def test_unwrapped_model_after_teardown_is_one_clear_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    from deepseek_pro.strategies.fsdp import FSDPStrategy
    from deepseek_pro.strategies.tp import TPStrategy

    one_rank_group(monkeypatch)
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=16, n_heads=2, n_layers=1, max_seq_len=16)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    strategy = {"fsdp": FSDPStrategy, "tp": TPStrategy}[name]({"backend": "gloo"}, precision=Precision("fp32"))
    strategy.setup_environment()
    try:
        strategy.place_for_training(model, lambda params: torch.optim.SGD([p for _, p in params], lr=0.1),
                                    StepSettings())
        whole = strategy.unwrapped_model().state_dict()  # before teardown: the full weights
        assert all(torch.equal(whole[k], v) for k, v in weights.items())
    finally:
        strategy.teardown()
    assert not dist.is_initialized() and strategy.model is None
    with pytest.raises(UsageError) as refused:
        strategy.unwrapped_model()
    assert str(refused.value) == (
        f"{name}: the model was released at teardown (the process group is gone); take it with unwrapped_model() "
        "before fit returns (a deepseek_train_end hook) or load the last checkpoint")


@pytest.mark.parametrize("name", ["deepspeed", "pipeline", "hybrid"])
def test_the_other_sharded_strategies_refuse_the_same_way(name: str) -> None:
    """No group needed: what teardown calls (release_engine) is enough for the refusal."""
    from deepseek_pro.strategies.deepspeed import DeepSpeedStrategy
    from deepseek_pro.strategies.hybrid import HybridStrategy
    from deepseek_pro.strategies.pipeline import PipelineStrategy

    cls = {"deepspeed": DeepSpeedStrategy, "pipeline": PipelineStrategy, "hybrid": HybridStrategy}[name]
    strategy = cls({"backend": "gloo"}, precision=Precision("fp32"))
    strategy.release_engine()
    with pytest.raises(UsageError, match=f"^{name}: the model was released at teardown "):
        strategy.unwrapped_model()
    if name == "deepspeed":  # its checkpoints' gather too (deepspeed_state.gather_full_state)
        with pytest.raises(UsageError, match="^deepspeed: the model was released at teardown "):
            strategy.full_state()
