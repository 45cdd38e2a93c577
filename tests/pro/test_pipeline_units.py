"""Pipeline / hybrid pieces that need no process group: the micro-batch rule, the fit checks, the
mesh shape, merging stage parts into canonical checkpoint files, rebuilding the full model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepseek.config.load import load_config
from deepseek.errors import ConfigError, UsageError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.models.protocol import TrainableModel
from deepseek.training import checkpoint as ckpt
from deepseek.training.step import StepSettings
from deepseek_pro.strategies import pipeline_state
from deepseek_pro.strategies.hybrid import HybridStrategy, mesh_shape
from deepseek_pro.strategies.pipeline import (
    PipelineStrategy,
    check_pipeline_fit,
    pipeline_microbatches,
)


def _config(*sets: str):
    return load_config(None, ['strategy.name="pipeline"', "data.batch_size=8", *sets])


def test_microbatch_rule() -> None:
    opts = _config().strategy.options
    assert pipeline_microbatches(opts, grad_accum=1, stages=2) == 2  # at least one per stage
    assert pipeline_microbatches(opts, grad_accum=4, stages=2) == 4  # else the grad-accum count
    assert pipeline_microbatches(_config("strategy.microbatches=8").strategy.options, 1, 2) == 8


def test_fit_checks_name_the_field() -> None:
    with pytest.raises(ConfigError, match="4 blocks for 5 stages"):
        check_pipeline_fit(_config(), stages=5, dp=1, n_blocks=4)
    with pytest.raises(ConfigError, match="8 rows per pipeline do not split into 3 micro-batches"):
        check_pipeline_fit(_config("strategy.microbatches=3"), stages=2, dp=1, n_blocks=4)
    with pytest.raises(ConfigError, match="1f1b schedule needs at least one micro-batch per stage"):
        check_pipeline_fit(_config("strategy.microbatches=2"), stages=4, dp=1, n_blocks=4)
    check_pipeline_fit(_config('strategy.schedule="gpipe"', "strategy.microbatches=2"), stages=4, dp=1, n_blocks=4)
    with pytest.raises(ConfigError, match="strategy.schedule: 'zigzag' .*allowed values: 'gpipe', '1f1b'"):
        _config('strategy.schedule="zigzag"')


def test_mesh_shape() -> None:
    assert mesh_shape(4, 2) == (2, 2) and mesh_shape(2, 1) == (1, 2) and mesh_shape(2, 2) == (2, 1)
    with pytest.raises(UsageError, match="3 pipeline stages do not divide 4 processes"):
        mesh_shape(4, 3)


def test_launch_checks_of_both_strategies() -> None:
    four = GPT(GPTConfig(d_model=32, n_heads=2, n_layers=4, max_seq_len=16))
    PipelineStrategy.check_launch(_config(), world_size=2, model=four)
    with pytest.raises(ConfigError, match="4 blocks for 8 stages"):
        PipelineStrategy.check_launch(_config("data.batch_size=16"), world_size=8, model=four)
    hybrid = load_config(None, ['strategy.name="hybrid"', "strategy.pp_size=2", "data.batch_size=8"])
    HybridStrategy.check_launch(hybrid, world_size=4, model=four)
    with pytest.raises(ConfigError, match="strategy.pp_size"):
        HybridStrategy.check_launch(hybrid, world_size=3, model=four)
    nine = load_config(None, ['strategy.name="hybrid"', "strategy.pp_size=9", "data.batch_size=18"])
    with pytest.raises(ConfigError, match="4 blocks for 9 stages"):
        HybridStrategy.check_launch(nine, world_size=9, model=four)


def test_pipeline_needs_a_model_with_stages() -> None:
    from deepseek.models.capabilities import require_capabilities
    from deepseek.training.build import needed_capabilities

    needed = needed_capabilities(_config(), PipelineStrategy)
    require_capabilities(GPT(GPTConfig(d_model=32, n_heads=2, n_layers=2, max_seq_len=16)), needed, model_name="tiny")
    with pytest.raises(ConfigError, match=r"^strategy 'pipeline' needs pipeline stages \(split_stages, "
                       r"pipeline_batch, pipeline_loss\), which model 'lin' \(Linear\) does not offer; use another "
                       r"strategy \(ddp, deepspeed, fsdp\)"):
        require_capabilities(torch.nn.Linear(2, 2), needed, model_name="lin")


def test_a_served_pipeline_declares_generation_and_decodes_eagerly() -> None:
    from deepseek.models.capabilities import model_capabilities
    from deepseek.models.static_decoding import StaticDecoders
    from deepseek_pro.strategies.pipeline_decode import PipelinedModel

    stage = GPT(GPTConfig(d_model=32, n_heads=2, n_layers=2, max_seq_len=16)).split_stages(2)[0]
    assert "cached_decoding" in model_capabilities(stage) and "generation" not in model_capabilities(stage)
    served = PipelinedModel(None, stage, None)  # type: ignore[arg-type]  # refused before the strategy is used
    assert model_capabilities(served) == {"generation"}
    with pytest.raises(UsageError, match=r"^generate --strategy pipeline: the stages decode eagerly, not on a "
                       r"static cache; leave out --cuda-graphs$"):
        served.generate(torch.zeros(1, 2, dtype=torch.long), 2, static=StaticDecoders(graphs=False))


def test_a_served_pipeline_declares_the_whole_models_vocabulary() -> None:
    from types import SimpleNamespace

    from deepseek.training.inference import generating_tokenizer
    from deepseek_pro.strategies.pipeline_decode import place_stage

    strategy = SimpleNamespace(name="pipeline", pp_size=2, pp_rank=1, device=torch.device("cpu"),
                               settings=StepSettings())
    model = GPT(GPTConfig(vocab_size=300, d_model=32, n_heads=2, n_layers=2, max_seq_len=16))
    served = place_stage(strategy, model)  # type: ignore[arg-type]
    assert served.generation_vocab_size() == 300  # the whole model's, kept when its other stage is freed
    with pytest.raises(UsageError, match=r"^generate: the model has 300 token ids but no tokenizer\.json"):
        generating_tokenizer(served, None)


def test_merge_parts_gives_single_files(tmp_path: Path) -> None:
    """Stage parts (full names, tied copy only in the model file) merge into exactly the names
    and parameter groups that ``single`` writes, and the parts are removed."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=32, n_heads=2, n_layers=2, max_seq_len=16))
    stages = model.split_stages(2)
    for i, stage in enumerate(stages):
        opt = torch.optim.AdamW([{"params": [p for p in stage.parameters() if p.ndim >= 2]},
                                 {"params": [p for p in stage.parameters() if p.ndim < 2]}])
        sum(p.sum() for p in stage.parameters()).backward()
        opt.step()
        msd, osd = pipeline_state.stage_state(stage, opt, tied={"lm_head.weight": "wte.weight"} if i == 1 else {})
        ckpt.save_model_state(pipeline_state.part_path(tmp_path, i, ckpt.MODEL_FILE), msd)
        ckpt.save_optimizer_state(pipeline_state.part_path(tmp_path, i, ckpt.OPTIMIZER_FILE), osd)
    pipeline_state.merge_parts(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "optimizer.safetensors"]
    weights = ckpt.load_model_state(tmp_path / ckpt.MODEL_FILE)
    assert sorted(weights) == sorted(model.state_dict())  # lm_head.weight included, as single writes
    optim = ckpt.load_optimizer_state(tmp_path / ckpt.OPTIMIZER_FILE)
    names = {n for n, _ in model.named_parameters()}  # the tied head is not a separate parameter
    assert set(optim["state"]) == names
    assert sorted(n for g in optim["param_groups"] for n in g["params"]) == sorted(names)


def test_rebuild_model_draws_no_random_numbers() -> None:
    from deepseek_pro.strategies.twin import meta_twin

    model = GPT(GPTConfig(d_model=32, n_heads=2, n_layers=2, max_seq_len=16))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    full = pipeline_state.rebuild_model(meta_twin(model), model.state_dict())
    assert torch.equal(torch.get_rng_state(), before)
    assert full.lm_head.weight is full.wte.weight
    idx = torch.randint(0, 256, (2, 8))
    assert torch.equal(full(idx), model(idx))


class _PlainStages(torch.nn.Module):
    """A pipeline model whose ``split_stages`` returns its submodules themselves: their weights
    are named ``0.weight`` / ``weight``, not the model's ``first.0.weight`` / ``last.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
        self.last = torch.nn.Linear(8, 3)

    def split_stages(self, n: int) -> list[torch.nn.Module]:
        return [self.first, self.last]


def test_stages_that_do_not_keep_the_models_names_are_refused_at_set_up() -> None:
    """Their merged checkpoint would hold ``0.weight``, ``weight``, ...: it would load back into
    no model. Refused at set-up, before a step or a checkpoint, in one line naming the model and
    the first key that differs (was: trained, and saved an unloadable checkpoint)."""
    from deepseek.training.mixed_precision import Precision
    from deepseek.training.strategy import StepSettings
    from deepseek_pro.strategies.pipeline_stage import check_stage_names

    strategy = PipelineStrategy(None, precision=Precision("fp32"))
    with pytest.raises(UsageError, match=r"^strategy 'pipeline': model 'plain': the stages its split_stages returns do "
                       r"not keep the model's parameter names \(stage 0 holds '0\.weight', which is no key of the "
                       r"model's state_dict\), so its checkpoints would not load back; make each stage hold"):
        strategy.place_for_training(_PlainStages(), lambda params: None, StepSettings(model_name="plain"))
    model = GPT(GPTConfig(d_model=32, n_heads=2, n_layers=2, max_seq_len=16))
    check_stage_names(model, model.split_stages(2), "gpt", "pipeline")  # the GPT's stages (tied head included)
    with pytest.raises(UsageError, match=r"\(the model's 'blocks\.1\.ln1\.weight' is in no stage\)"):
        check_stage_names(model, model.split_stages(2)[:1], "gpt", "pipeline")


def test_a_served_pipeline_without_cached_decoding_evaluates_and_refuses_only_generate() -> None:
    """``deepseek eval --strategy pipeline`` never decodes: stages without ``cached_decoding`` are
    placed (was: refused at placement, eval included); ``generate`` refuses them in one line."""
    from types import SimpleNamespace

    from deepseek.models.protocol import TrainableModel
    from deepseek_pro.strategies.pipeline_decode import place_stage

    class Kept(torch.nn.Module):
        def __init__(self, key: str, module: torch.nn.Module) -> None:
            super().__init__()
            self.key = key
            self.add_module(key, module)

    class Staged(_PlainStages, TrainableModel):
        def split_stages(self, n: int) -> list[torch.nn.Module]:
            return [Kept("first", self.first), Kept("last", self.last)]

        def pipeline_batch(self, batch):  # noqa: ANN001, ANN202
            return (batch["x"],), batch["label"]

        def pipeline_loss(self, output, target):  # noqa: ANN001, ANN202
            return torch.nn.functional.cross_entropy(output, target)

    strategy = SimpleNamespace(name="pipeline", pp_size=2, pp_rank=0, device=torch.device("cpu"),
                               settings=StepSettings())
    served = place_stage(strategy, Staged())  # type: ignore[arg-type]
    assert sorted(served.stage.state_dict()) == ["first.0.bias", "first.0.weight"]
    with pytest.raises(UsageError, match=r"^generate --strategy pipeline: the model's stages \(Kept\) offer no "
                       r"KV-cache decoding \(capability 'cached_decoding'\); use --strategy tp or one process$"):
        served.generate(torch.zeros(1, 2, dtype=torch.long), 2)


class _KeptStage(torch.nn.Module):
    """A stage keeping its module under the model's name for it; ``broken``: its ``state_dict``
    raises (a bug in the plugin's stage)."""

    def __init__(self, key: str, module: torch.nn.Module, broken: bool = False) -> None:
        super().__init__()
        self.add_module(key, module)
        self.broken = broken

    def state_dict(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        if self.broken:
            raise KeyError("no such stage key")
        return super().state_dict(*args, **kwargs)


class _BuggyStages(_PlainStages, TrainableModel):
    """A plugin's pipeline model with a bug where the strategy splits it: ``split_stages`` raises
    (``bug`` ``"split"``) or its last stage's ``state_dict`` does (``"state_dict"``)."""

    def __init__(self, bug: str) -> None:
        super().__init__()
        self.bug = bug

    def block_modules(self) -> list[torch.nn.Module]:
        return [self.first, self.last]

    def split_stages(self, n: int) -> list[torch.nn.Module]:
        if self.bug == "split":
            return [self.first, self.last][n]  # the plugin's bug: an IndexError
        return [_KeptStage("first", self.first), _KeptStage("last", self.last, broken=self.bug == "state_dict")]

    def pipeline_batch(self, batch):  # noqa: ANN001, ANN202
        return (batch["x"],), batch["label"]

    def pipeline_loss(self, output, target):  # noqa: ANN001, ANN202
        return torch.nn.functional.cross_entropy(output, target)


@pytest.mark.parametrize(("bug", "call", "raised"), [("split", "split_stages", "IndexError: list index out of range"),
                                                     ("state_dict", "state_dict", "KeyError: 'no such stage key'")])
def test_a_plugin_models_bug_where_the_stages_are_split_is_its_line(bug: str, call: str, raised: str) -> None:
    """The model's ``split_stages`` and its stages' ``state_dict`` (the stage-name check) run in
    ``settings.model_calls``, as the model's other calls do: a plugin model's bug there is one line
    naming the model and the call, at training's set-up and at ``eval`` / ``generate --strategy
    pipeline``'s placement (was: core's "internal error: IndexError ..." with its traceback)."""
    from types import SimpleNamespace

    from deepseek.errors import PluginError
    from deepseek.plugins.calls import blame_for, code_package
    from deepseek.training.mixed_precision import Precision
    from deepseek_pro.strategies.pipeline_decode import place_stage

    model = _BuggyStages(bug)
    settings = StepSettings(model_name="acme.staged", model_calls=blame_for("model 'acme.staged'", code_package(model)))
    line = rf"^model 'acme\.staged': {call} raised {raised}; a bug in the plugin: "
    strategy = PipelineStrategy(None, precision=Precision("fp32"))
    strategy.pp_size = 2  # split as for two stages (this process set up as the first)
    with pytest.raises(PluginError, match=line):
        strategy.place_for_training(model, lambda params: None, settings)
    if bug == "split":  # placement splits too (and checks no names)
        placer = SimpleNamespace(name="pipeline", pp_size=2, pp_rank=0, device=torch.device("cpu"), settings=settings)
        with pytest.raises(PluginError, match=line):
            place_stage(placer, model)  # type: ignore[arg-type]
