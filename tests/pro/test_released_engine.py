"""After teardown a distributed strategy has dropped its engine and its process group
(``release_engine``, docs/distributed.md "After the run"): every call needing either (the strategy's
``engine_calls``: the step, evaluation, the whole model, checkpoints, the collectives) then refuses in
one line naming the call, from the base class's one check (``deepseek_pro.strategies.released``),
instead of a bare assert, an AttributeError on None, torch's "Default process group has not been
initialized", or a silent one-rank answer. In process, one gloo rank."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from _prohelpers import one_rank_group

import deepseek
from deepseek.errors import UsageError
from deepseek.plugins.host import get_host
from deepseek.training.mixed_precision import Precision
from deepseek.training.strategy import StepSettings
from deepseek_pro.strategies.base import DistributedStrategy
from deepseek_pro.strategies.released import ENGINE_CALLS

DISTRIBUTED = {c.name: c.load() for c in get_host().components("strategy")}
DISTRIBUTED = {name: cls for name, cls in sorted(DISTRIBUTED.items()) if issubclass(cls, DistributedStrategy)}

ENGINE_FREE = {
    "rank", "world_size", "local_rank", "dp_rank", "dp_size", "is_global_zero", "device", "backend", "comm_device",
    "is_first", "is_last", "pp_peer", "norm_share", "module",  # topology, stored answers, pure functions
    "setup_environment", "setup", "place_for_training", "place_for_inference", "setup_inference", "shard_stage",
    "resolved_options", "autocast", "teardown", "release_engine", "engine_held",  # set-up, the teardown itself
}
"""Public members of a distributed strategy that need neither its engine nor its process group."""


def line(name: str, call: str) -> str:
    return (f"{name}: {call} after teardown, which released the model and the process group; call it before teardown "
            "(under fit: in a deepseek_train_end hook), or load the last checkpoint")


def call_member(strategy: Any, member: str) -> Any:
    """``strategy.member`` (a property) or ``strategy.member(None, ...)`` with None for each required argument:
    after teardown the check comes before the strategy's own code reads any of them."""
    if isinstance(inspect.getattr_static(type(strategy), member), property):
        return getattr(strategy, member)
    method = getattr(strategy, member)
    params = [p for p in inspect.signature(method).parameters.values() if p.default is p.empty]
    args = [None for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return method(*args, **{p.name: None for p in params if p.kind is p.KEYWORD_ONLY})


def public_members(cls: type) -> set[str]:
    """The instance members ``cls`` offers (methods and properties; not class methods, attributes or dataclasses)."""
    out = set()
    for name in dir(cls):
        member = inspect.getattr_static(cls, name)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
            out.add(name)
    return out


def placed(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, torch.Tensor]]:
    """``name`` on a one-rank gloo group, a tiny GPT placed for training; its initial weights."""
    one_rank_group(monkeypatch)
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=16, n_heads=2, n_layers=1, max_seq_len=16)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    strategy = DISTRIBUTED[name]({"backend": "gloo"}, precision=Precision("fp32"))
    strategy.setup_environment()
    try:
        strategy.place_for_training(model, lambda params: torch.optim.SGD([p for _, p in params], lr=0.1),
                                    StepSettings())
    except BaseException:
        strategy.teardown()
        raise
    return strategy, weights


def test_the_registered_distributed_strategies_are_the_pro_ones() -> None:
    assert {"ddp", "fsdp", "tp", "pipeline", "hybrid", "deepspeed"} <= set(DISTRIBUTED)


@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_every_public_member_is_refused_after_teardown_or_needs_no_engine(name: str) -> None:
    """A new public method of a strategy is either refused after teardown or said to need no engine (ENGINE_FREE)."""
    cls = DISTRIBUTED[name]
    unsorted = public_members(cls) - ENGINE_CALLS - ENGINE_FREE
    assert not unsorted, f"{name}: add {sorted(unsorted)} to released.ENGINE_CALLS or to this test's ENGINE_FREE"


@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_every_engine_call_after_teardown_is_one_clear_error(name: str) -> None:
    """No group needed: what teardown calls (release_engine) is enough for the refusal."""
    cls = DISTRIBUTED[name]
    strategy = cls({"backend": "gloo"}, precision=Precision("fp32"))
    strategy.release_engine()
    calls = sorted(cls.engine_calls & public_members(cls))
    assert {"save_checkpoint", "load_checkpoint", "evaluate", "train_step", "barrier", "any_rank"} <= set(calls)
    for member in calls:
        with pytest.raises(UsageError) as refused:
            call_member(strategy, member)
        is_property = isinstance(inspect.getattr_static(cls, member), property)
        assert str(refused.value) == line(name, member if is_property else f"{member}()"), member
    if name in ("pipeline", "hybrid", "deepspeed"):  # what their checkpoints gather
        assert {"pipeline": "stage_state", "hybrid": "stage_state", "deepspeed": "full_state"}[name] in calls
    if name == "ddp":  # its trained module stays (below); everyone else's is gone
        assert cls.engine_calls == ENGINE_CALLS - {"unwrapped_model", "eval_module"}
    else:
        assert cls.engine_calls == ENGINE_CALLS


@pytest.mark.parametrize("name", ["fsdp", "tp", "ddp"])
def test_after_a_real_teardown_checkpoints_and_collectives_refuse(name: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    strategy, weights = placed(name, monkeypatch)
    try:
        whole = strategy.unwrapped_model().state_dict()  # before teardown: the full weights
        assert all(torch.equal(whole[k], v) for k, v in weights.items())
    finally:
        strategy.teardown()
    assert not dist.is_initialized()
    if name == "ddp":  # keeps the module it wrapped, with the trained weights
        assert all(torch.equal(strategy.unwrapped_model().state_dict()[k], v) for k, v in weights.items())
        assert strategy.eval_module is strategy.unwrapped_model()
    else:
        assert strategy.model is None
        with pytest.raises(UsageError) as refused:
            strategy.unwrapped_model()
        assert str(refused.value) == line(name, "unwrapped_model()")
    target = tmp_path / "step-1"
    target.mkdir()
    for call, run in [("save_checkpoint()", lambda: strategy.save_checkpoint(target, {"step": 1})),
                      ("load_checkpoint()", lambda: strategy.load_checkpoint(target)),
                      ("barrier()", strategy.barrier), ("any_rank()", lambda: strategy.any_rank(True)),
                      ("broadcast_object()", lambda: strategy.broadcast_object({"a": 1}))]:
        with pytest.raises(UsageError) as refused:
            run()
        assert str(refused.value) == line(name, call)
    assert list(target.iterdir()) == []  # nothing half-written


def test_the_pipelines_served_model_refuses_after_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``deepseek eval`` / ``generate --strategy pipeline`` call (load_placed's model): answers before teardown,
    one line after it (was an AssertionError, and torch's "Default process group has not been initialized")."""
    one_rank_group(monkeypatch)
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=16, n_heads=2, n_layers=1, max_seq_len=16)
    strategy = DISTRIBUTED["pipeline"]({"backend": "gloo"}, precision=Precision("fp32"))
    strategy.setup_environment()
    try:
        served = strategy.place_for_inference(model, StepSettings())
        ids = torch.zeros(1, 4, dtype=torch.long)
        assert served.generate(ids, 2, top_k=1).shape == (1, 6)
        assert torch.isfinite(served(input_ids=ids, targets=ids))
    finally:
        strategy.teardown()
    with pytest.raises(UsageError) as refused:
        served(input_ids=ids, targets=ids)
    assert str(refused.value) == line("pipeline", "the served model's forward()")
    with pytest.raises(UsageError) as refused:
        served.generate(ids, 2, top_k=1)
    assert str(refused.value) == line("pipeline", "the served model's generate()")


def test_the_trainers_own_calls_after_fit_refuse_in_the_strategys_line(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``trainer.save_checkpoint()`` after ``fit`` was a PluginError blaming deepseek-pro for an AssertionError
    (ddp), and ``trainer.evaluate()`` each rank's own mean; then both met the first refused strategy call
    (``any_rank()``, ``evaluate()``); now the trainer asks the strategy first (``Strategy.engine_held``) and the
    line names the user's call, nothing written. ddp's trained module is still there."""
    from _prohelpers import tiny_config

    from deepseek.config.load import config_from_dict
    from deepseek.training.trainer import Trainer

    one_rank_group(monkeypatch)
    trainer = Trainer(config_from_dict(tiny_config("ddp", 1, options={"backend": "gloo"}, train={"warmup_steps": 0})), run_dir=tmp_path / "run",
                      quiet=True)
    trainer.fit()
    saved = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert [p.name for p in saved] == ["latest", "step-1"]
    for call, run in [("trainer.save_checkpoint()", trainer.save_checkpoint), ("trainer.evaluate()", trainer.evaluate)]:
        with pytest.raises(UsageError) as refused:
            run()
        assert str(refused.value) == line("ddp", call)
    assert sorted((tmp_path / "run" / "checkpoints").iterdir()) == saved
    assert isinstance(trainer.strategy.unwrapped_model(), torch.nn.Module)


def test_the_tp_served_model_refuses_after_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``deepseek eval`` / ``generate --strategy tp`` call is the parallelized model itself: before teardown it
    answers as the plain model (forward, generate), nothing added to its calls; after it each entry point refuses in
    the strategy's line (was: the model computing on the one rank left, without a word), its class and so its
    capabilities kept."""
    from deepseek.models.capabilities import model_capabilities

    one_rank_group(monkeypatch)
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=16, n_heads=2, n_layers=1, max_seq_len=16).eval()
    ids = torch.randint(0, 256, (1, 4))
    with torch.no_grad():
        plain_loss = model(input_ids=ids, targets=ids)
    plain_tokens = model.generate(ids, 3, top_k=1)
    strategy = DISTRIBUTED["tp"]({"backend": "gloo"}, precision=Precision("fp32"))
    strategy.setup_environment()
    try:
        served = strategy.place_for_inference(model, StepSettings())
        offered = model_capabilities(served)
        with torch.no_grad():
            assert torch.allclose(served(input_ids=ids, targets=ids), plain_loss, atol=1e-6)
        assert torch.equal(served.generate(ids, 3, top_k=1), plain_tokens)
    finally:
        strategy.teardown()
    assert type(served).__name__ == "GPT" and model_capabilities(served) == offered and "generation" in offered
    cache = None
    for call, run in [("forward()", lambda: served(input_ids=ids, targets=ids)),
                      ("generate()", lambda: served.generate(ids, 3, top_k=1)),
                      ("new_cache()", lambda: served.new_cache(1, 8)),
                      ("forward_cached()", lambda: served.forward_cached(ids, cache)),
                      ("decode_window()", served.decode_window)]:
        with pytest.raises(UsageError) as refused:
            run()
        assert str(refused.value) == line("tp", f"the served model's {call}"), call
