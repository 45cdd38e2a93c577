"""A pipeline's metrics and evaluations follow ``single``'s rules (``_pipeline_metric_rules.py``,
2 gloo processes, ``strategy.name = "pipeline"``, against ``single`` with the same micro-batches):

- a step's micro-batches are combined by core's ``MetricSums``: a micro-batch whose metric is NaN
  (padding only) or that did not return it did not measure it, so the step's value is the other
  one's (was: the plain mean, NaN, and the metric left out of step 1's record);
- a metric that first appears on step 2 is recorded on step 2 (was: dropped silently, the names
  being agreed on at the first step only), and left out of step 3, which did not return it;
- an error the model raises during an evaluation, in ``pipeline_loss`` on the last stage or in
  the first stage's forward, ends BOTH ranks with ``single``'s line (was: that stage alone; the
  other waited or died of gloo's closed connection), and a plain ``RuntimeError`` (a bug in model
  code) ends both as that RuntimeError, an internal error, the model's traceback on the stage that
  raised it (was: that stage alone); the same bug in a plugin's model ends both with the line
  blaming the model (was: that line on the stage that raised it, core's internal error on the
  other), in the run's training as in ``deepseek eval --strategy pipeline`` of the trained model
  (was there: "forward raised" on the raising stage, blamed by the package of pro's wrapper, and
  RankError on the other);
- a plugin model's bug while ``deepseek generate --strategy pipeline`` decodes, on either stage,
  ends both ranks with the line blaming the model, as ``single`` blames it (was: that line on the
  raising stage, the other waiting for its hidden states or logits, or dying of the lost peer),
  also in its ``decode_window`` with no new token asked; stages giving different decode windows
  are the model's bug, its one-line PluginError on both ranks (was: a UsageError, the user's
  fault), and a ``decode_window`` answer that cannot be pickled (a lambda) is refused before
  the ranks exchange it, its line on both ranks (was: the exchange failed on its rank
  alone, the other dying of gloo's closed connection); a stage's ``forward_cached`` that never
  advances ``cache.length`` is the model's line on both ranks (was: decoded on, no word);
- a plugin model's ``pipeline_loss`` returning a loss per row (no 0-dim tensor), in training or in
  an evaluation, or a mapping without ``"loss"`` in an evaluation, is the model's bug, its one-line
  PluginError on both ranks (was: a UsageError, as if the user's input were wrong); a script's model's is the script's one-line UsageError, blamed on no plugin (was: it would have
  been blamed on the pipeline strategy).

The models run one after another in one job, so a rank left waiting hangs the next: the job's
timeout fails the test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from _pipeline_metric_rules import (
    BUG_LINE,
    DECODING_MODELS,
    FIRST_STAGE_LINE,
    LAST_STAGE_LINE,
    MODELS,
    PLUGIN_MODELS,
    attempt,
)
from _prohelpers import run_torchrun

PROBE = Path(__file__).with_name("_pipeline_metric_rules.py")


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("pipeline-metric-rules")
    run_torchrun([str(PROBE), str(out), *MODELS, *PLUGIN_MODELS, "ServedPluginEvalBug", *DECODING_MODELS], timeout=360)
    return [json.loads((out / f"messages-{rank}.json").read_text()) for rank in (0, 1)]


def _close(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_step_and_validation_metrics_are_singles(job: list[dict[str, dict[str, Any]]], tmp_path: Path) -> None:
    single = attempt(tmp_path, "single", "Padded")
    assert single["type"] is None, single
    steps = single["steps"]
    assert [sorted(r) for r in steps] == [  # the rules, as single applies them
        ["accuracy", "grad_norm", "loss", "lr", "samples", "skipped", "step"],
        ["accuracy", "grad_norm", "late", "loss", "lr", "samples", "skipped", "step"],
        ["accuracy", "grad_norm", "loss", "lr", "samples", "skipped", "step"],  # no 2 in step 3: not measured
    ]
    assert not any(math.isnan(v) for r in steps for v in r.values())
    assert set(single["val"]) == {"val_loss", "val_accuracy", "val_late"}
    for seen in job:
        got = seen["Padded"]
        assert got["type"] is None, got
        assert len(got["steps"]) == 3
        for mine, theirs in zip(got["steps"], steps, strict=True):
            _close(mine, theirs)
        _close(got["val"], single["val"])


@pytest.mark.parametrize(("model", "line"), [("EvalRefusal", LAST_STAGE_LINE), ("FirstStageRefusal", FIRST_STAGE_LINE)])
def test_an_error_in_an_evaluation_is_singles_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]], tmp_path: Path, model: str, line: str) -> None:
    single = attempt(tmp_path, "single", model)
    assert single == {"type": "UsageError", "message": line, "steps": [], "val": {}, "raised_in": "forward"
                      if model == "FirstStageRefusal" else "pipeline_loss"}
    for seen in job:
        assert {k: v for k, v in seen[model].items() if k != "raised_in"} == \
            {k: v for k, v in single.items() if k != "raised_in"}


@pytest.mark.parametrize(("model", "raised_in", "stage"), [("EvalBug", "pipeline_loss", 1), ("FirstStageBug", "forward", 0)])
def test_a_bug_in_an_evaluation_stays_an_internal_error_on_every_rank(
        job: list[dict[str, dict[str, Any]]], tmp_path: Path, model: str, raised_in: str, stage: int) -> None:
    """A plain RuntimeError in model code ends every rank with its line, an internal error (exit
    code 1, not blamed on the pipeline strategy's plugin), the model's traceback on the stage that
    raised it."""
    single = attempt(tmp_path, "single", model)
    assert single == {"type": "RuntimeError", "message": BUG_LINE, "steps": [], "val": {}, "raised_in": raised_in}
    for rank, seen in enumerate(job):
        assert seen[model]["message"] == BUG_LINE
        if rank == stage:  # its own exception, the model's traceback with it
            assert (seen[model]["type"], seen[model]["raised_in"]) == ("RuntimeError", raised_in)
        else:  # RuntimeError's line, an internal error blamed on no plugin (the CLI names it RuntimeError)
            assert (seen[model]["type"], seen[model]["type_name"]) == ("RankError", "RuntimeError")


@pytest.mark.parametrize(("model", "call", "served"), [("PluginEvalBug", "pipeline_loss", False),
                                                     ("PluginFirstStageBug", "forward", False),
                                                     ("PluginEvalBug", "pipeline_loss", True)])
def test_a_plugin_models_bug_in_an_evaluation_is_its_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]], model: str, call: str, served: bool) -> None:
    """The same bug in a plugin's model: every rank ends with the one line blaming the model, a
    PluginError on every rank, its traceback on the stage that raised it (was: that line on the
    raising stage, core's internal error, RankError, on the other, which the launcher could
    report first; then a DeepseekError of that line on the other). The same in ``deepseek eval --strategy pipeline`` (``served``: the run's
    evaluation, ``evaluate_run``, of the model trained on other rows; was: "forward raised" on
    the raising stage, blamed by the package of pro's wrapper around the stage, whatever the
    call, and RankError on the other; the last stage's bug only, one more set-up in the job)."""
    name = f"Served{model}" if served else model
    line = (f"model 'acme.{model.lower()}' (deepseek-acme 0.1, registered by __main__): {call} raised "
            f"RuntimeError: {BUG_LINE}; a bug in the plugin: upgrade it or report it to its authors")
    types = [seen[name]["type"] for seen in job]
    assert types == ["PluginError", "PluginError"], [seen[name] for seen in job]  # was DeepseekError on the other
    for seen in job:
        assert seen[name]["message"].startswith(line), seen[name]
    assert job[0][name]["message"] == job[1][name]["message"]


@pytest.mark.parametrize(("model", "when"), [("PluginTrainShape", "training"), ("PluginEvalShape", "evaluation")])
def test_a_pipeline_loss_that_is_no_0_dim_tensor_is_the_models_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]], model: str, when: str) -> None:
    """A plugin model's ``pipeline_loss`` returning a loss per row (shape (8,)): its broken answer,
    in training (refused after the step, before the optimizer) and in an evaluation alike, the
    one-line PluginError naming the model on both ranks (was: a UsageError, exit code 2, as if the
    user's input were wrong)."""
    line = (f"model 'acme.{model.lower()}' (deepseek-acme 0.1, registered by __main__): pipeline_loss returned a "
            "tensor of shape (8,); it must return the mean loss of the micro-batch, a 0-dim tensor (loss.mean(), or "
            "reduction='mean' in the loss function); a bug in the plugin: upgrade it or report it to its authors")
    assert [seen[model] for seen in job] == [{"type": "PluginError", "message": line}] * 2, when


def test_a_pipeline_loss_without_a_loss_in_an_evaluation_is_the_models_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]]) -> None:
    """A plugin model's ``pipeline_loss`` returning a mapping without ``"loss"`` in an evaluation:
    its broken answer, as in training (where it already was: the same rule, ``shape_problem``),
    the one-line PluginError naming the model on both ranks (was: a UsageError, exit code 2)."""
    line = ("model 'acme.pluginevalnoloss' (deepseek-acme 0.1, registered by __main__): pipeline_loss returned a dict "
            "without the key 'loss' (its keys: 'accuracy'); it must return the mean loss of the micro-batch, a 0-dim "
            "tensor (loss.mean(), or reduction='mean' in the loss function), or a mapping with the key 'loss' and the "
            "model's metrics; a bug in the plugin: upgrade it or report it to its authors")
    assert [seen["PluginEvalNoLoss"] for seen in job] == [{"type": "PluginError", "message": line}] * 2


def test_a_scripts_pipeline_loss_that_is_no_0_dim_tensor_is_blamed_on_no_plugin(
        job: list[dict[str, dict[str, Any]]]) -> None:
    """The same broken answer of a script's model (``deepseek.fit``), blamed on no plugin: the
    script's one-line UsageError on every rank (``calls.scripts_own``: its author is the user; was,
    before 37d15f40, the BrokenAnswer itself on the last stage and its RankError on the other), not
    a PluginError blaming pro's ``pipeline`` strategy, whose ``train_step`` block it passes through."""
    line = ("the model given to deepseek.fit: pipeline_loss returned a tensor of shape (8,); it must return the mean "
            "loss of the micro-batch, a 0-dim tensor (loss.mean(), or reduction='mean' in the loss function)")
    for seen in job:
        assert (seen["TrainShape"]["type"], seen["TrainShape"]["message"]) == ("UsageError", line), seen["TrainShape"]


@pytest.mark.parametrize(("model", "stage"), [("FirstStageDecodeBug", 0), ("LastStageDecodeBug", 1),
                                              ("WindowDecodeBug", 0), ("NoTokensWindowDecodeBug", 0)])
def test_a_plugin_models_bug_while_decoding_is_its_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]], model: str, stage: int) -> None:
    """``generate --strategy pipeline``: the first stage's ``forward_cached`` raising on the second
    token, the last stage's ``new_cache``, or the first stage's ``decode_window``, ends every rank with the line ``single`` gives
    (``generate raised``, blamed on the model): a PluginError on every rank (was: a DeepseekError of
    the line on the other rank; before, the other rank left waiting for a tensor, or dying of the lost peer). Also
    when no new token is asked (``NoTokens...``; was: the raising rank alone, no logits exchanged)."""
    line = (f"model 'acme.{model.lower()}' (deepseek-acme 0.1, registered by __main__): generate raised "
            f"RuntimeError: {BUG_LINE}; a bug in the plugin: upgrade it or report it to its authors")
    assert [seen[model]["type"] for seen in job] == ["PluginError", "PluginError"]  # was DeepseekError off stage
    for seen in job:
        assert seen[model]["message"].startswith(line), seen[model]
    assert job[0][model]["message"] == job[1][model]["message"]


def test_stages_giving_different_decode_windows_are_the_models_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]]) -> None:
    """The window decides when each stage's cache is rebuilt: stages disagreeing would rebuild at
    different tokens, each rank then decoding on another schedule (was: no word, the ranks' messages
    out of step). The ranks agree on it before decoding and refuse it alike: the model's
    ``split_stages`` broke the documented rule, so it is the plugin's bug, a PluginError naming
    its distribution on every rank (was: a UsageError, exit code 2, as if the user's)."""
    line = ("model 'acme.unequalwindows' (deepseek-acme 0.1, registered by __main__): split_stages(2) gives "
            "stages of different decode windows (16 on stage 0, 8 on stage 1), so generate --strategy pipeline "
            "would rebuild their KV caches at different tokens; every stage's decode_window must return the whole "
            "model's (docs/plugins.md, 'Models'; --strategy tp or one process serves the model meanwhile); a bug "
            "in the plugin: upgrade it or report it to its authors")
    assert [seen["UnequalWindows"] for seen in job] == [{"type": "PluginError", "message": line}] * 2


def test_a_decode_window_that_cannot_be_pickled_is_the_models_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]]) -> None:
    """The last stage's ``decode_window`` answering a lambda: checked on its rank before the
    exchange, so only plain values travel, and its line blaming the model ends every rank, a
    PluginError on each (was: a DeepseekError of the line on the other rank; before, pickling failed in
    ``all_gather_object`` on that rank alone, the other dying of gloo's "Connection reset by
    peer"). The check's other answers (a lock, a float, 0) are test_generation_capability's."""
    line = ("model 'acme.lambdawindow' (deepseek-acme 0.1, registered by __main__): decode_window returned a "
            "function, not a positive int: the most positions its KV cache holds, the model's context length "
            "(docs/plugins.md, 'Models'); a bug in the plugin: upgrade it or report it to its authors")
    assert [seen["LambdaWindow"] for seen in job] == [{"type": "PluginError", "message": line}] * 2


def test_a_stage_that_never_advances_its_cache_length_is_the_models_line_on_every_rank(
        job: list[dict[str, dict[str, Any]]]) -> None:
    """The first stage's ``forward_cached`` leaving ``cache.length`` at 0 (its output right): checked
    on that stage before its hidden states are sent on, its line blaming the model ends every rank,
    a PluginError on each (was: no word; the stage's length, which the loop reads to rebuild the
    cache at the window, never reaching it, so past the window the stages would rebuild at
    different tokens; one process: test_cache_length)."""
    line = ("model 'acme.stucklength' (deepseek-acme 0.1, registered by __main__): forward_cached was fed 2 "
            "position(s) at cache.length 0 and left it at 0, not 2: it must add the positions it consumed to "
            "cache.length, which the decoding loop reads to rebuild the cache at the window (docs/plugins.md, "
            "'Models'); a bug in the plugin: upgrade it or report it to its authors")
    assert [seen["StuckLength"] for seen in job] == [{"type": "PluginError", "message": line}] * 2
