"""The tables of ``deepseek multimodal study`` and ``deepseek multimodal table``: test accuracy
per task and model (mean +- std over seeds), robustness with one modality missing, each
modality's own reading, calibrated models' figures before calibration, fused models' figures with
fixed ``--eval-logit-weights``, the complementary task's
unimodal ceiling, batch-1 latency and validation accuracy against steps; and the reading of a
``results.jsonl`` file back from disk (every line checked, a seed given twice refused), the one
reader of ``deepseek multimodal table`` and of a study that continues.
"""

from __future__ import annotations

import errno
import math
import statistics
from pathlib import Path
from typing import Any

from deepseek.config.field_checks import FLOAT32_MAX, SEED_MAX
from deepseek.errors import UsageError
from deepseek.parsing import UnreadableFile, loads_json, read_text
from deepseek.plugins.records import NAME_RE
from deepseek_enterprise.study_freeform import freeform_problem
from deepseek_enterprise.study_recipes import CONFIGS, RECIPES, model_of, recipe_label

MAX_RESULTS_BYTES = 64 << 20
"""The largest results file :func:`read_results` reads (it is read whole; a line is a few hundred bytes)."""
PARAMETERS_MAX = 10**15
"""The largest parameter count a results line may give (the largest models have about 10^12)."""
BYTES_MAX = 2**50
"""The largest peak memory a results line's ``latency`` may give (1 PiB; no machine has that much)."""
LATENCY_MS_MAX = 86_400_000
"""The longest batch-1 call a results line's ``latency`` may give, in milliseconds (a day)."""
STEPS_MAX = 10**12
"""The most steps a results line's ``steps`` and ``val_curve`` may give (decades of training)."""
SECONDS_MAX = 10**9
"""The longest a results line's ``seconds`` (one model's training and testing) may be: about 32 years."""


def row_recipe(row: dict[str, Any]) -> str | None:
    """The recipe a results row was trained with (rows written before recipes existed: ``aux``
    for fused models)."""
    if "recipe" in row:
        return row["recipe"]
    return "aux" if len(model_of(row["config"])[0]) > 1 else None


def row_key(row: dict[str, Any]) -> tuple[str, str, int]:
    """A checked results row's place in the tables: task, model label (with its recipe and
    training sources) and seed; two rows with one key would count that seed twice."""
    return row["task"], recipe_label(row["config"], row_recipe(row), row.get("train_sources", "all")), row["seed"]


def _groups(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows grouped by model and recipe, in ``CONFIGS`` order, then plugins' fusion methods in the
    order of their first rows, each with its table label."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for name in [*CONFIGS, *dict.fromkeys(r["config"] for r in rows if r["config"] not in CONFIGS)]:
        for r in rows:
            if r["config"] == name:
                groups.setdefault(recipe_label(name, row_recipe(r), r.get("train_sources", "all")), []).append(r)
    return list(groups.items())


def _mean_of(rows: list[dict[str, Any]], key: str) -> str:
    values = [r["test"][key] for r in rows if isinstance(r["test"].get(key), (int, float))]
    return f"{100 * statistics.mean(values):.1f}" if values else "-"


def check_row(row: Any) -> str | None:
    """What is wrong with a results line read back from disk (None: nothing)."""
    if not isinstance(row, dict):
        return "a results line is a JSON object"
    if row.get("task") not in ("redundant", "complementary"):
        return f"task {row.get('task')!r} is not redundant or complementary"
    if row.get("config") not in CONFIGS and not (isinstance(row.get("config"), str) and NAME_RE.fullmatch(row["config"])):
        return (f"config {row.get('config')!r} is not one of {', '.join(CONFIGS)} or a fusion method's name "
                "(lower case letters, digits, '.', '_' and '-')")
    if row.get("recipe") is not None and row.get("recipe") not in RECIPES:
        return f"recipe {row.get('recipe')!r} is not one of {', '.join(RECIPES)}"
    if row.get("train_sources", "all") not in ("all", "fit", "blend"):  # multimodal.digits' data.train_sources
        return f"train_sources {row.get('train_sources')!r} is not all, fit or blend"
    if not _count(row.get("seed")) or row["seed"] > SEED_MAX:  # the range of the study's --seed
        return f"seed {row.get('seed')!r} is not a whole number from 0 to {SEED_MAX}"
    test = row.get("test")
    if not isinstance(test, dict) or not _fraction(test.get("test_accuracy")):
        return "test.test_accuracy must be a number in [0, 1]"
    if _metrics_problem("test", test) is not None:  # test_loss and any other metric: means over the test batches
        return _metrics_problem("test", test)
    missing = row.get("missing")
    modalities = model_of(row["config"])[0]
    if len(modalities) > 1 and (not isinstance(missing, dict)
                                or not all(_fraction(missing.get(m)) for m in ("vision", "audio", "text"))):
        return "missing must give a number in [0, 1] for vision, audio and text"
    if len(modalities) == 1 and "missing" in row:  # the study writes it for fused models only
        return f"missing is written for fused models only; a unimodal row ({row['config']}) has none"
    problem = _check_extras(row) or freeform_problem(row)  # the types first, then counts and texts
    if problem is not None:
        return problem
    if "before_calibration" in row:
        before, val = row["before_calibration"], row.get("val")
        if not (isinstance(before, dict) and _fraction(before.get("test_accuracy")) and _fraction(before.get("val_accuracy"))
                and isinstance(val, dict) and _fraction(val.get("val_accuracy"))):
            return "a calibrated row needs before_calibration.{test,val}_accuracy and val.val_accuracy in [0, 1]"
        if logit_weights_problem(row.get("logit_weights"), modalities) is not None:
            return "logit_weights must map fused and the model's modalities to finite numbers"
    if "weighted" in row:  # --eval-logit-weights: the fused model evaluated with fixed weights
        weighted = row["weighted"]
        if len(modalities) == 1:
            return f"weighted is written for fused models only; a unimodal row ({row['config']}) has none"
        if not (isinstance(weighted, dict) and _fraction(weighted.get("val_accuracy"))
                and _fraction(weighted.get("test_accuracy"))):
            return "weighted needs val_accuracy and test_accuracy in [0, 1]"
        problem = logit_weights_problem(weighted.get("logit_weights"), modalities)
        if problem is not None:
            return f"weighted.logit_weights: {problem}"
    return None


def logit_weights_problem(weights: Any, modalities: tuple[str, ...]) -> str | None:
    """What is wrong with ``weights`` read back from disk as a model's ``logit_weights`` (None:
    nothing): a non-empty mapping of ``fused`` and ``modalities`` to finite numbers in the range
    ``[model] logit_weights`` takes."""
    from deepseek_enterprise.multimodal import (  # imports torch: only here
        all_zero_logit_weights,
        logit_weight_problem,
        unknown_logit_weight,
    )

    if not isinstance(weights, dict) or not weights:
        return f"{weights!r} is not a table of weights"
    unknown = unknown_logit_weight(weights, modalities)
    if unknown is not None:
        return f"{unknown} is not 'fused' or one of {', '.join(modalities)}"
    for key, value in weights.items():
        if not _number(value):
            return f"{key} = {value!r} is not a finite number"
        if logit_weight_problem(value):
            return f"{key} = {logit_weight_problem(value)}"
    return all_zero_logit_weights(weights)


def read_results(path: Path, fix: str, seen: dict[tuple[str, str, int], str] | None = None, *,
                 last_may_be_cut: bool = False) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
    """The checked rows of results file ``path`` with their line numbers, and the number of a last
    line cut short as it was written (not JSON, no newline after it), which only
    ``last_may_be_cut`` allows (else ``None``). Anything else wrong is one :class:`UsageError`
    naming the file and line, ending in ``fix``: a missing file (or a loop of symbolic links, or a
    link to nothing: :func:`deepseek.paths.broken_link`), one that is not a regular one (read, a FIFO
    would block), not UTF-8 (a byte-order mark is no error), a line that is not a results line, or
    one repeating the key (:func:`row_key`) of a line before it here or in ``seen`` (key: where it
    was read), which this adds to."""
    seen = {} if seen is None else seen
    if not path.exists():
        from deepseek.paths import broken_link

        raise UsageError(f"{path}: {broken_link(path) or 'does not exist'}; {fix}")
    try:  # checked on the descriptor read (a regular file, bounded): the path may be swapped after any check
        text = read_text(path, MAX_RESULTS_BYTES).removeprefix("\ufeff")
    except UnreadableFile as exc:
        if exc.errno == errno.EFBIG:
            raise UsageError(f"{path}: larger than {MAX_RESULTS_BYTES >> 20} MiB, more than a study's results file "
                             f"holds; {fix}") from None
        raise UsageError(f"{path}: not a regular file (a folder, device, FIFO or socket); {fix}") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: not a regular file (a folder, device, FIFO or socket); {fix}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}); {fix}") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror}); {fix}") from None
    lines = text.split("\n")
    rows: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = loads_json(line)
        except ValueError as exc:
            if last_may_be_cut and n == len(lines):
                return rows, n
            raise UsageError(f"{path}:{n}: not a results line ({getattr(exc, 'msg', exc)}); {fix}") from None
        problem = check_row(row)
        if problem:
            raise UsageError(f"{path}:{n}: {problem}; {fix}")
        key = row_key(row)
        if key in seen:
            raise UsageError(f"{path}:{n}: repeats the results of {key[1]} on the {key[0]} task, seed {key[2]} "
                             f"({seen[key]}): a seed counted twice would weigh the mean; {fix}")
        seen[key] = f"{path}:{n}"
        rows.append((n, row))
    return rows, None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def _metrics_problem(split: str, metrics: dict[str, Any]) -> str | None:
    """What is wrong with a results line's ``test`` or ``val`` figures, means over its batches (None:
    nothing): accuracies in [0, 1], the loss >= 0, all within float32's range (their means stay in it)."""
    for key, value in metrics.items():
        if key.startswith(f"{split}_accuracy") and not _fraction(value):
            return f"{split}.{key} must be a number in [0, 1], got {value!r}"
        if not (_number(value) and abs(value) <= FLOAT32_MAX):
            return f"{split}.{key} must be a finite number within float32's range (3.4e38), got {value!r}"
        if key == f"{split}_loss" and value < 0:
            return f"{split}.{key} must be a number >= 0, got {value!r}"
    return None


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_extras(row: dict[str, Any]) -> str | None:
    """The optional parts of a results line: ``parameters``, ``machine``, ``val``, ``val_curve`` and ``latency``."""
    problem = _parameters_problem("parameters", row.get("parameters"))
    if problem is not None:
        return problem
    if "steps" in row and not (_count(row["steps"]) and row["steps"] <= STEPS_MAX):  # 0: an ensemble trains nothing
        return f"steps {row['steps']!r} is not a whole number from 0 to 10^12"
    if "seconds" in row and not (_number(row["seconds"]) and 0 <= row["seconds"] <= SECONDS_MAX):
        return f"seconds {row['seconds']!r} is not a number from 0 to 10^9 (about 32 years)"
    machine = row.get("machine")  # what the run was measured on (deepseek.bench.latency.machine_info)
    if machine is not None and not (isinstance(machine, dict) and isinstance(machine.get("cpu"), str) and all(
            isinstance(v, str) or v is None or _count(v) for v in machine.values())):
        return f"machine {machine!r} is not a table of the CPU's name (cpu) and other names or counts"
    started = row.get("started_from")  # modality -> the unimodal run folder a model started from
    if started is not None and not (isinstance(started, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in started.items())):
        return f"started_from {started!r} is not a table of modality = run folder"
    val = row.get("val")  # the fixed-weights table shows val.val_accuracy as a percentage
    if val is not None and not (isinstance(val, dict) and all(_fraction(v) for k, v in val.items() if k.startswith("val_accuracy"))):
        return "val must give val_accuracy (and val_accuracy_<modality>) as numbers in [0, 1]"
    if val is not None and _metrics_problem("val", val) is not None:  # val_loss and the others: as test's
        return _metrics_problem("val", val)
    curve = row.get("val_curve")
    if curve is not None and not (isinstance(curve, list) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and _count(p[0]) and p[0] <= STEPS_MAX
            and (p[1] is None or (_number(p[1]) and 0.0 <= p[1] <= 1.0)) for p in curve)):
        return "val_curve must be a list of [step from 0 to 10^12, accuracy in [0, 1] or null] pairs"
    lat = row.get("latency")
    if lat is not None:
        if not (isinstance(lat, dict) and all(_number(lat.get(k)) and 0 <= lat[k] <= LATENCY_MS_MAX
                                              for k in ("p50_ms", "p90_ms")) and isinstance(lat.get("device"), str)):
            return "latency must give p50_ms and p90_ms (milliseconds, 0 to a day: 86400000) and the device"
        for key in ("peak_memory_bytes", "peak_rss_bytes"):
            v = lat.get(key)
            if v is not None and not (_count(v) and v <= BYTES_MAX):
                return f"latency.{key} {v!r} is not a count of bytes from 0 to 2^50 (1 PiB)"
        return _parameters_problem("latency.parameters", lat.get("parameters"))
    return None


def _parameters_problem(key: str, v: Any) -> str | None:
    """What is wrong with a results line's parameter count (None: nothing, or not given): a count
    that no model has was shown in the tables as it came (10^30 as '999999999999999983222784.00 M')."""
    if v is None:
        return None
    if not _count(v):
        return f"{key} {v!r} is not a count"
    if v > PARAMETERS_MAX:
        return f"{key} {v} is more than 10^15, more than any model has"
    return None


def calibration_lines(rows: list[dict[str, Any]], stat: Any) -> list[str]:
    """For the calibrated models among ``rows`` (one task): val and test accuracy before and after
    calibration, and the fitted weights (mean over seeds)."""
    groups = [(label, rs) for label, rs in _groups(rows)
              if all(isinstance(r.get("before_calibration"), dict) for r in rs)]
    if not groups:
        return []
    lines = ["Calibrated models (`logit_weights` fitted on the blend part; accuracy %, mean +- std):", "",
             "| model | val before | val after | test before | test after | weights (mean) |",
             "|---|---|---|---|---|---|"]
    for label, rs in groups:
        before = [r["before_calibration"] for r in rs]
        keys = [k for k in ("fused", "vision", "audio", "text") if all(k in r.get("logit_weights", {}) for r in rs)]
        weights = ", ".join(f"{k} {statistics.mean(r['logit_weights'][k] for r in rs):.2f}" for k in keys)
        lines.append(f"| {label} | {stat([b['val_accuracy'] for b in before])} "
                     f"| {stat([r['val']['val_accuracy'] for r in rs])} | {stat([b['test_accuracy'] for b in before])} "
                     f"| {stat([r['test']['test_accuracy'] for r in rs])} | {weights} |")
    return lines + [""]


def weighted_lines(rows: list[dict[str, Any]], stat: Any) -> list[str]:
    """For the models among ``rows`` (one task) evaluated with fixed ``--eval-logit-weights``: val
    and test accuracy as trained (as its row reports them) and with those weights, one line per
    model and weights; the ensemble's (``late``) among them."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for label, rs in _groups(rows):
        for r in rs:
            if isinstance(r.get("weighted"), dict):
                weights = ", ".join(f"{k} {v:g}" for k, v in r["weighted"]["logit_weights"].items())
                groups.setdefault((label, weights), []).append(r)
    if not groups:
        return []
    lines = ["Fixed logit weights (`--eval-logit-weights`, not fitted; accuracy %, mean +- std):", "",
             "| model | weights | seeds | val | val weighted | test | test weighted |", "|---|---|---|---|---|---|---|"]
    for (label, weights), rs in groups.items():
        val = [r["val"]["val_accuracy"] for r in rs if isinstance(r.get("val"), dict) and "val_accuracy" in r["val"]]
        lines.append(f"| {label} | {weights} | {len(rs)} | {stat(val)} | {stat([r['weighted']['val_accuracy'] for r in rs])} "
                     f"| {stat([r['test']['test_accuracy'] for r in rs])} "
                     f"| {stat([r['weighted']['test_accuracy'] for r in rs])} |")
    return lines + [""]


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown tables: test accuracy mean +- std over seeds per task and config, robustness with
    one modality missing, and the complementary task's unimodal ceiling."""
    def stat(values: list[float]) -> str:
        if not values:
            return "-"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} +- {100 * sd:.1f}"

    lines = []
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        seeds = sorted({r["seed"] for r in mine})
        lines += [f"### {task} (test accuracy %, mean +- std over seeds {seeds})", "",
                  "| model | parameters | accuracy | without vision | without audio | without text "
                  "| own labels read (vision / audio / text) |",
                  "|---|---|---|---|---|---|---|"]
        for label, rs in _groups(mine):
            acc = stat([r["test"]["test_accuracy"] for r in rs])
            miss = [stat([r["missing"][m] for r in rs]) if "missing" in rs[0] else "-" for m in ("vision", "audio", "text")]
            params = rs[0].get("parameters")
            shown = millions(params) if isinstance(params, int) else "-"
            own = [_mean_of(rs, f"test_accuracy_{m}") for m in ("vision", "audio", "text")]
            lines.append(f"| {label} | {shown} | {acc} | {' | '.join(miss)} | {' / '.join(own)} |")
        lines.append("")
        lines += calibration_lines(mine, stat)
        lines += weighted_lines(mine, stat)
    red = [r for r in rows if r["task"] == "redundant"]
    vision = [r["test"]["test_accuracy"] for r in red if r["config"] == "vision"]
    audio = [r["test"]["test_accuracy"] for r in red if r["config"] == "audio"]
    lines += latency_lines(rows)
    if vision and audio:
        lines += [f"Ceiling of the complementary task (vision x audio accuracy on the redundant task, errors taken "
                  f"as independent): {100 * statistics.mean(vision) * statistics.mean(audio):.1f}%", ""]
    return "\n".join(lines + curves(rows))


def millions(count: int) -> str:
    """A parameter count in millions as the tables show it: two decimals from 0.1 M up (``0.56 M``),
    two significant digits below (``0.0042 M`` for 4,200; rounding to two decimals showed a small
    model as ``0.00 M``). The digits are counted on the value rounded to two significant digits, so
    a count that rounds up to the next power of ten keeps two (9,999 is ``0.010 M``, not ``0.0100 M``;
    99,999 is ``0.10 M``, as 0.1 M and more shows)."""
    m = count / 1e6
    if m <= 0:
        return f"{m:.2f} M"
    exponent = int(f"{m:.1e}".partition("e")[2])  # of the value rounded to two significant digits
    decimals = 2 if exponent >= -1 else 1 - exponent
    return f"{m:.{decimals}f} M"


def latency_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Batch-1 latency per model (as the tables group rows) and device, the medians over its timed
    runs (every fused model the study trained; a study before 2026-12-07 timed ``cross_attention`` only)."""
    lines: list[str] = []
    for label, rs in _groups([r for r in rows if isinstance(r.get("latency"), dict)]):
        for device in sorted({r["latency"]["device"] for r in rs}):
            lat = [r["latency"] for r in rs if r["latency"].get("device") == device]
            gpu = [v["peak_memory_bytes"] for v in lat if v.get("peak_memory_bytes")]
            memory = f", peak GPU memory {max(gpu) / 2**20:.0f} MiB" if gpu else ""
            runs = f"{len(lat)} run{'s' if len(lat) != 1 else ''}"
            lines += [f"{label}, batch 1 on {device} ({runs}, {millions(lat[0].get('parameters') or 0)} "
                         f"parameters): p50 {statistics.median(v['p50_ms'] for v in lat):.2f} ms, "
                         f"p90 {statistics.median(v['p90_ms'] for v in lat):.2f} ms{memory}", ""]
    return lines


def curves(rows: list[dict[str, Any]]) -> list[str]:
    """Validation accuracy against steps per task and model (mean over seeds), from each row's
    ``val_curve``: how sensitive each model is to the step budget."""
    lines: list[str] = []
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task and isinstance(r.get("val_curve"), list)]
        steps = sorted({int(s) for r in mine for s, a in r["val_curve"] if isinstance(a, (int, float)) and s > 0})
        if not steps:
            continue
        lines += [f"### {task}: validation accuracy % against steps (mean over seeds)", "",
                  "| model | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---|" * len(steps)]
        for label, rs in _groups(mine):
            at = {s: [a for r in rs for t, a in r["val_curve"] if t == s and a is not None] for s in steps}
            if any(at.values()):
                lines.append(f"| {label} | " + " | ".join(f"{100 * statistics.mean(v):.1f}" if v else "-"
                                                        for v in at.values()) + " |")
        lines.append("")
    return lines
