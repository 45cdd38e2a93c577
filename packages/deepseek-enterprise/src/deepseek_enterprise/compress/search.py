"""``deepseek compress --max-drop BUDGET``: accuracy-aware search over compression recipes.

A recipe is a chain of registered compressors with their options (``prune.ffn ratio=0.5`` then
``quantize.int8``); each step's result is the next step's input, its ``[model]`` table carried
along, so a chain writes one run folder like a single method. Every recipe that applies to the
model and the device (a compressor's ``check_model`` decides; CUDA adds ``int4-weight`` and
``float8``) is applied to the trained model and measured on the same validation batches as the
original: validation loss (and accuracy where the model reports it), weights as stored and
batch-1 latency. The budget is

* ``N%``: validation loss at most N percent (relative) above the original's, or
* ``Npt``: validation accuracy at most N points below the original's (classifiers);

among the recipes within it the one with the smallest weights wins (ties: the faster one, then
the one with the smaller drop), or with ``--prefer latency`` the fastest (batch-1 p50; ties: the
smaller weights, then the smaller drop): :data:`PREFERENCES`, :func:`pick`. Every
recipe tried is reported with its figures and why it was kept or rejected (a recipe whose step
raises or breaks the compressor contract is ``failed`` with that step's one-line reason, and the
search goes on; Intel Neural Compressor's accuracy-driven tuning is the model: a tolerance on the metric, candidates from the
most to the least compression, the first/smallest that fits kept). When none fits, nothing is
written and the message names the closest one.

A ``recover`` step (:mod:`.recover`) trains its input against the original for the search's
``--recovery-steps``: the built-in recipes try each pruning both bare and followed by
``recover``, so the report shows what recovery buys. Steps get a
:class:`~deepseek_enterprise.compress.compressor.StepContext` (their position in the recipe and
the search's :class:`~deepseek_enterprise.compress.compressor.Recovery`); a chain prefix that
later recipes share (``prune.ffn ratio=0.5 + recover`` of ``... + quantize.int8``) is computed
once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepseek.errors import PluginError, TrainingDivergedError, UsageError

if TYPE_CHECKING:
    import torch

    from deepseek_enterprise.compress.compressor import Recovery

Step = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Recipe:
    """A chain of compressors (name, options) applied in order."""

    steps: tuple[Step, ...]

    @property
    def label(self) -> str:
        return " + ".join(name + "".join(f" {k}={v}" for k, v in opts.items()) for name, opts in self.steps)


ACCURACY = "val_accuracy"
"""The validation value an ``Npt`` budget reads; an ``N%`` budget reads ``val_loss``."""


def relative_change(before: float, after: float) -> float:
    """``after`` against ``before`` in percent of ``before`` (the unit of an ``N%`` budget and of
    the command's table for every validation value)."""
    return 100.0 * (after / before - 1.0)


def points_change(before: float, after: float) -> float:
    """An accuracy's change in points (``0.90 -> 0.89`` is ``-1.0``): the unit of an ``Npt``
    budget, shown beside the relative change for :data:`ACCURACY` in the command's table."""
    return 100.0 * (after - before)


@dataclass(frozen=True)
class Budget:
    """The largest quality loss accepted."""

    value: float
    unit: str  # "%" (relative validation loss) or "pt" (accuracy points)

    @property
    def measures(self) -> str:
        """What the drop is, for the search table's header."""
        return "val_loss, % above the original's" if self.unit == "%" else f"{ACCURACY}, points below the original's"

    @property
    def text(self) -> str:
        return f"{self.value:g}{self.unit}"

    def drop(self, original: dict[str, Any], compressed: dict[str, Any]) -> float | None:
        """The drop in the budget's unit (``None``: the metric is missing)."""
        if self.unit == "%":
            return relative_change(original["val_loss"], compressed["val_loss"])
        if ACCURACY not in original or ACCURACY not in compressed:
            return None
        return -points_change(original[ACCURACY], compressed[ACCURACY])


def parse_budget(text: str) -> Budget:
    """``"1%"`` or ``"0.5pt"`` as a :class:`Budget`; a one-line :class:`UsageError` otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(%|pts?)\s*", text)
    if m is None or float(m.group(1)) < 0:
        raise UsageError(f"--max-drop: {text!r} is not a budget; give a relative validation-loss increase "
                         "such as 1% or accuracy points such as 0.5pt")
    return Budget(float(m.group(1)), "%" if m.group(2) == "%" else "pt")


def option_table(items: list[str] | tuple[str, ...], malformed: Callable[[str], str],
                 where: str) -> dict[str, Any]:
    """The options of one compressor from ``KEY=VALUE`` items (``--set``'s, or a ``--recipe``
    step's words), values parsed as ``--set`` parses them. One :class:`UsageError` line for an
    item that is no assignment (``malformed(item)``) or a key given twice (``where`` names the
    place: one value per key, never the last one silently winning)."""
    from deepseek.config.overrides import parse_option

    options: dict[str, Any] = {}
    for item in items:
        key, value = parse_option(item, malformed(item))
        if key in options:
            raise UsageError(f"{where} {key} given twice; give it once")
        options[key] = value
    return options


def parse_recipe(text: str) -> Recipe:
    """``"prune.ffn ratio=0.5 + quantize.int8"`` as a :class:`Recipe` (values parsed like
    ``--set``); a one-line :class:`UsageError` for an empty step, a malformed option or one given
    twice in a step."""
    steps: list[Step] = []
    for part in text.split("+"):
        words = part.split()
        if not words:
            raise UsageError(f"--recipe {text!r}: an empty step; write steps as 'prune.ffn ratio=0.5 + quantize.int8'")
        options = option_table(words[1:], lambda word: f"--recipe {text!r}: {word!r} is not KEY=VALUE (options "
                                                       "follow the compressor's name)",
                               where=f"--recipe {text!r}: {words[0]}")
        steps.append((words[0], options))
    return Recipe(tuple(steps))


def default_recipes(device: torch.device, recovery_steps: int = 0) -> list[Recipe]:
    """The recipes tried, most compression first; with ``recovery_steps``, each pruning (the GPT's
    and ``prune.mlp``) is tried bare and followed by ``recover steps=N`` (before any quantization)."""
    ffn50, ffn25 = ("prune.ffn", {"ratio": 0.5}), ("prune.ffn", {"ratio": 0.25})
    heads, mlp, int8 = ("prune.heads", {"ratio": 0.25}), ("prune.mlp", {"ratio": 0.5}), ("quantize.int8", {})
    recover: tuple[Step, ...] = (("recover", {"steps": recovery_steps}),) if recovery_steps else ()

    def variants(*steps: Step, then: tuple[Step, ...] = ()) -> list[Recipe]:
        """``steps + then``, and with ``recover`` between them."""
        return [Recipe((*steps, *then))] + ([Recipe((*steps, *recover, *then))] if recover else [])

    recipes: list[Recipe] = []
    if device.type == "cuda":
        recipes.append(Recipe((("quantize.int4-weight", {}),)))
    recipes += [*variants(ffn50, then=(int8,)), *variants(ffn25, then=(int8,)), *variants(mlp, then=(int8,)),
                Recipe((int8,)), Recipe((("quantize.int8-weight", {}),))]
    if device.type == "cuda":
        recipes.append(Recipe((("quantize.float8", {}),)))
    recipes += [*variants(ffn50), *variants(ffn25), *variants(heads), *variants(mlp)]
    return recipes


@dataclass(frozen=True)
class Preference:
    """What a search keeps among the recipes within its budget (``--prefer``): ``key`` ranks them,
    the lowest kept; ``kept``/``beaten`` are their verdicts in the table and ``compression.json``."""

    name: str
    key: Callable[[Tried], tuple[float, float, float]]
    kept: str
    beaten: str


def _drop(t: Tried) -> float:
    return t.drop if t.drop is not None else 0.0


def _p50(t: Tried) -> float:
    """The recipe's batch-1 p50; none (not timed, or its timing failed on its own): slower than any."""
    p50 = t.figures.get("p50_ms")
    return p50 if p50 is not None else math.inf


PREFERENCES = {p.name: p for p in (
    Preference("size", lambda t: (t.figures["weights_bytes"], _p50(t), _drop(t)),
               "kept: the smallest within budget",
               "within budget; a smaller (or as small and faster or better) recipe was kept"),
    Preference("latency", lambda t: (_p50(t), t.figures["weights_bytes"], _drop(t)),
               "kept: the fastest within budget",
               "within budget; a faster (or as fast and smaller or better) recipe was kept"),
)}
"""``--prefer size`` (the default): the smallest weights, then the faster, then the smaller drop
(a recovered twin of a recipe); ``--prefer latency``: the lowest batch-1 p50, then the smaller
weights, then the smaller drop. ``latency`` needs the candidates' ``p50_ms`` measured; one whose
timing failed on its own (no figure) counts as slower than any."""


def pick(within: list[Tried], prefer: str = "size") -> Tried:
    """The recipe kept among ``within`` (measured, within the budget) by ``--prefer prefer``; on a
    tie of every figure, the earlier (more compression first)."""
    return min(within, key=PREFERENCES[prefer].key)


@dataclass
class Tried:
    """One recipe's outcome."""

    recipe: Recipe
    figures: dict[str, Any] = field(default_factory=dict)
    drop: float | None = None
    verdict: str = ""
    result: Any = None  # (Compressed, config) of the last step, kept for the winner only
    records: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {"recipe": self.recipe.label, "steps": [[n, o] for n, o in self.recipe.steps], "drop": self.drop,
                "verdict": self.verdict, **self.figures, "records": self.records}


def create_steps(host: Any, recipe: Recipe) -> list[Any]:
    """The compressors of ``recipe``, options validated (an unknown name or option is a one-line
    error naming the recipe, raised before any work)."""
    from deepseek_enterprise.compress.compressor import create_compressor

    steps = [create_compressor(host, name, table, where=_step_where(name)) for name, table in recipe.steps]
    _check_recover_places(recipe, steps)
    return steps


def check_steps_without_torch(host: Any, recipe: Recipe) -> bool:
    """What :func:`create_steps` checks of ``recipe``'s steps that imports no torch
    (:func:`~deepseek_enterprise.compress.compressor.check_without_torch`: each name, and the
    options of a compressor declaring it loads without torch); the job service runs it at submit.
    Whether every step declares it loads without torch (then :func:`create_steps` imports no
    torch either, and the job service runs it too)."""
    from deepseek_enterprise.compress import LOADS_WITHOUT_TORCH
    from deepseek_enterprise.compress.compressor import check_without_torch

    for name, table in recipe.steps:
        check_without_torch(host, name, table, where=_step_where(name))
    return all(host.resolve("compressor", name).declared(LOADS_WITHOUT_TORCH) is True for name, _ in recipe.steps)


def _step_where(name: str) -> str:
    """How a recipe step's option errors name it."""
    return f"--recipe ({name})"


def _check_recover_places(recipe: Recipe, steps: list[Any]) -> None:
    """A ``recover`` step needs a compressed model before it that still trains: at the start of a
    recipe, or right after a quantization, it failed only when the search reached it."""
    from deepseek_enterprise.compress.quantizers import Quantize
    from deepseek_enterprise.compress.recover import Recover

    for i, step in enumerate(steps):
        if not isinstance(step, Recover):
            continue
        if i == 0:
            raise UsageError(f"--recipe {recipe.label!r}: recover has nothing to recover at the start of a recipe; put "
                             "it after a compressor, e.g. 'prune.ffn ratio=0.5 + recover'")
        if any(isinstance(before, Quantize) for before in steps[:i]):
            raise UsageError(f"--recipe {recipe.label!r}: recover follows a quantization, and a quantized model does "
                             "not train; recover before quantizing ('prune.ffn + recover + quantize.int8')")


Applied = tuple[Any, Any, list[dict[str, Any]]]
"""``(Compressed, its config, records)`` of a chain of steps."""


def apply_recipe(host: Any, recipe: Recipe, model: Any, config: Any, calibration: list[Any],
                 recovery: Recovery | None = None, done: dict[tuple[Any, ...], Applied] | None = None) -> Applied:
    """``(Compressed, its config, records)`` of ``recipe`` applied to ``model`` (left as it was);
    a :class:`UsageError` when a step does not apply to its input (its ``check_model``, or its
    ``apply`` refusing the context), a :class:`PluginError` when a step breaks the compressor
    contract (``compressor.run_step``). ``done``: results of chain prefixes computed before (read,
    and filled for every prefix of ``recipe``); a caller keeps only those a later recipe shares."""
    from deepseek_enterprise.compress.compressor import StepContext, check_applies, run_step

    current, current_config, result, records = model, config, None, []
    steps = create_steps(host, recipe)
    for i, ((name, _), compressor) in enumerate(zip(recipe.steps, steps, strict=True)):
        prefix = _key(recipe.steps[: i + 1])
        if done is not None and prefix in done:
            result, current_config, records = done[prefix]
            current, records = result.model, list(records)
            continue
        check_applies(compressor, current, current_config)
        result, current_config = run_step(host, compressor, current, current_config,
                                          StepContext(calibration, i, recovery))
        current = result.model
        records.append({"method": name, "record": result.record})
        if done is not None:
            done[prefix] = (result, current_config, list(records))
    return result, current_config, records


def _key(steps: tuple[Step, ...]) -> tuple[Any, ...]:
    """A hashable form of a chain of steps."""
    return tuple((name, tuple(sorted((k, repr(v)) for k, v in opts.items()))) for name, opts in steps)


def state_bytes(model: Any) -> int:
    """Bytes of the model's state as stored (shared tensors once)."""
    seen: dict[int, int] = {}
    for t in model.state_dict().values():
        seen[t.untyped_storage().data_ptr()] = max(seen.get(t.untyped_storage().data_ptr(), 0), t.numel() * t.element_size())
    return sum(seen.values())


def search(host: Any, budget: Budget, recipes: list[Recipe], model: Any, config: Any, calibration: list[Any],
           original: dict[str, Any], measure: Any, progress: Any = None,
           recovery: Recovery | None = None, prefer: str = "size") -> tuple[Tried | None, list[Tried]]:
    """Try every recipe; return ``(the winner or None, every recipe tried)``. ``measure(model,
    config)`` gives a recipe's figures (as for the original, ``weights_bytes`` from the state).
    ``recovery``: what ``recover`` steps train with (``None``: they are not applicable).
    ``prefer``: which recipe within the budget wins (:data:`PREFERENCES`)."""
    preference = PREFERENCES[prefer]
    tried: list[Tried] = []
    best: Tried | None = None
    done: dict[tuple[Any, ...], Applied] = {}
    for i, recipe in enumerate(recipes):
        if progress is not None:
            progress(f"[{i + 1}/{len(recipes)}] {recipe.label}")
        t = Tried(recipe)
        tried.append(t)
        later = {_key(r.steps[:n]) for r in recipes[i + 1:] for n in range(1, len(r.steps) + 1)}
        try:
            result, new_config, t.records = apply_recipe(host, recipe, model, config, calibration, recovery, done)
        except UsageError as exc:
            t.verdict = f"not applicable: {exc}"
            continue
        except (PluginError, TrainingDivergedError) as exc:  # a broken step, or a recover step whose training
            # diverged, fails its recipe; the search goes on
            t.verdict = f"failed: {exc}"
            continue
        finally:  # keep only the chains a later recipe starts with (or is)
            for key in [k for k in done if k not in later]:
                del done[key]
        t.figures = measure(result.model, new_config)
        t.drop = budget.drop(original, t.figures)
        if t.drop is None:
            t.verdict = f"rejected: the model reports no validation accuracy for a {budget.text} budget"
        elif not math.isfinite(t.drop):  # NaN compares False with the budget: it would be "within" it
            metric = "val_loss" if budget.unit == "%" else ACCURACY
            t.verdict = f"rejected: it evaluates to {metric} = {t.figures.get(metric)}, not a finite number"
        elif t.drop > budget.value:
            t.verdict = f"rejected: drop {t.drop:+.2f}{budget.unit} > {budget.text}"
        elif best is None or pick([best, t], prefer) is t:
            if best is not None:  # only the best so far keeps its model
                best.verdict, best.result = preference.beaten, None
            t.verdict, t.result, best = preference.kept, (result, new_config), t
        else:
            t.verdict = preference.beaten
    return best, tried
