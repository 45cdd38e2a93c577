"""``deepseek bench latency|train --against FILE.json``: compare a run with a saved result and
fail on a regression, so CI or a user can guard performance.

The saved result is what the same command wrote with ``--json``. It is read back like user input:
a file that is not that command's JSON, rows without the compared number, or a measurement of
something else (another model, shape, dtype, strategy or device) is refused with one line
naming the difference, since comparing those would mean nothing (:func:`check_same`; ``bench
latency`` calls it before timing, with what it is about to measure). A variant name twice in the
rows is refused too: which of the two is the baseline would be a guess. Rows are matched by variant
name; only rows in both are compared. Latency compares the median (lower is better), training
the tokens/s (higher is better). A row is a regression when it is worse than the baseline by
more than ``--max-regression`` percent; the command then exits with 1 (bad input stays 2).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek.errors import UsageError, shown, shown_markup
from deepseek.parsing import loads_json, read_text

EXIT_REGRESSION = 1

KINDS: dict[str, dict[str, Any]] = {
    "latency": {"metric": "median_ms", "better": "lower", "unit": "ms", "section": "info",
                "same": ("model", "config", "batch", "seq", "mode", "dtype", "gpu", "cpu", "threads")},
    "train": {"metric": "tokens_per_s", "better": "higher", "unit": "tokens/s", "section": "settings",
              "same": ("model", "precision", "batch", "seq", "grad_accum", "strategy", "strategy_options", "compile",
                       "compile_scope", "activation_checkpointing", "fp32_residual", "master_weights", "model_options",
                       "device_name")},
}


@dataclass(frozen=True)
class Comparison:
    """One variant, baseline against now; ``change`` is the relative change (+ = more)."""

    name: str
    baseline: float
    current: float
    change: float
    regressed: bool
    failed: str | None = None
    """Why the variant, timed in the baseline, gave no figure now (it failed on its own): a regression."""


def _where(path: str) -> str:
    return f"--against {path}"


def _facts(kind: str, result: dict[str, Any]) -> dict[str, Any]:
    """The keys two results must share to be comparable."""
    spec = KINDS[kind]
    section = dict(result.get(spec["section"]) or {})
    if kind == "train":
        device = result.get("device") or {}
        section["device_name"] = device.get("name")
    # Through JSON, as the saved file went: tuples become lists, so equal settings compare equal.
    return json.loads(json.dumps({k: section.get(k) for k in spec["same"]}, default=str))


def load_baseline(path: str, kind: str) -> dict[str, Any]:
    """Read and validate a saved ``bench <kind> --json`` result."""
    try:  # one bounded read of a regular file: the path may be swapped after any check
        text = read_text(Path(path))
    except (FileNotFoundError, IsADirectoryError):
        return baseline_from_text(None, path, kind)
    except OSError as exc:  # UnreadableFile: a FIFO, device or socket, or larger than any bench result
        raise UsageError(f"{_where(path)}: {exc.strerror or exc}; give the file 'deepseek bench {kind} --json' wrote"
                         ) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{_where(path)}: not JSON ({exc}); give the file 'deepseek bench {kind} --json' wrote") from None
    return baseline_from_text(text, path, kind)


def baseline_from_text(text: str | None, path: str, kind: str) -> dict[str, Any]:
    """A saved ``bench <kind> --json`` result from the text of the file ``path`` (``None``: there
    is no such file), validated. The job service checks a job's ``--against`` file with it at
    submit, read from the job's files."""
    where = _where(path)
    if text is None:
        raise UsageError(f"{where}: no such file; give the JSON a previous 'deepseek bench {kind} --json' wrote")
    try:
        data = loads_json(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON ({exc}); give the file 'deepseek bench {kind} --json' wrote") from None
    spec = KINDS[kind]
    if not isinstance(data, dict) or not isinstance(data.get(spec["section"]), dict) or not isinstance(
            data.get("rows"), list):
        raise UsageError(f"{where}: not a 'bench {kind}' result (no {spec['section']!r} and 'rows'); "
                         f"give the file 'deepseek bench {kind} --json' wrote")
    for i, row in enumerate(data["rows"]):
        value = row.get(spec["metric"]) if isinstance(row, dict) else None
        if not (isinstance(row, dict) and isinstance(row.get("name"), str) and isinstance(value, (int, float))
                and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            raise UsageError(f"{where}: rows[{i}] has no name or no positive finite {spec['metric']}; "
                             "the file was edited or is from another command")
    if not data["rows"]:
        raise UsageError(f"{where}: holds no rows to compare against")
    first: dict[str, int] = {}
    for i, row in enumerate(data["rows"]):
        if row["name"] in first:
            raise UsageError(f"{where}: rows[{i}] repeats variant {row['name']!r} of rows[{first[row['name']]}]; "
                             "the file was edited or joined from two results; keep one row per variant")
        first[row["name"]] = i
    return data


def check_same(baseline: dict[str, Any], current: dict[str, Any], *, kind: str, path: str) -> None:
    """Refuse ``baseline`` when it measured something else than ``current`` (a result, or what a run
    is about to measure: only the section of :data:`KINDS` is read), naming the first difference."""
    old, new = _facts(kind, baseline), _facts(kind, current)
    for key in KINDS[kind]["same"]:
        if old[key] != new[key]:
            raise UsageError(f"{_where(path)}: measured {key} = {old[key]!r}, this run {new[key]!r}; "
                             "compare like with like (the same options and machine), or save a new baseline")


def compare(baseline: dict[str, Any], current: dict[str, Any], *, kind: str, path: str,
            max_regression: float, failed: dict[str, str] | None = None) -> list[Comparison]:
    """The rows of both results, compared, and each baseline variant that ``failed`` now (name:
    why; left out of ``current``), a regression; a measurement of something else is refused."""
    spec = KINDS[kind]
    check_same(baseline, current, kind=kind, path=path)
    before = {r["name"]: float(r[spec["metric"]]) for r in baseline["rows"]}
    out = [Comparison(name, before[name], math.nan, math.nan, True, failed=why)
           for name, why in (failed or {}).items() if name in before]
    for row in current["rows"]:
        if row["name"] not in before:
            continue
        b, c = before[row["name"]], float(row[spec["metric"]])
        change = c / b - 1
        worse = change > max_regression if spec["better"] == "lower" else -change > max_regression
        out.append(Comparison(row["name"], b, c, change, worse))
    if not out:
        raise UsageError(f"{_where(path)}: no variant in common with this run (baseline: {', '.join(before)}); "
                         "run the same variants")
    return out


def report(comparisons: list[Comparison], *, kind: str, path: str, max_regression: float) -> int:
    """Print the comparison; the exit code (:data:`EXIT_REGRESSION` when a row regressed)."""
    import click
    from rich.console import Console
    from rich.table import Table

    spec = KINDS[kind]
    table = Table(title=f"against {shown_markup(path)} ({spec['metric']}, {spec['better']} is better; "
                        f"regression beyond {max_regression:.0%})", title_justify="left")
    for col in ("variant", f"baseline {spec['unit']}", f"now {spec['unit']}", "change", "verdict"):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right")
    for c in comparisons:
        fmt = "{:,.1f}" if kind == "latency" else "{:,.0f}"
        if c.failed is not None:
            table.add_row(c.name, fmt.format(c.baseline), "-", "-", f"REGRESSION: failed ({c.failed})")
            continue
        table.add_row(c.name, fmt.format(c.baseline), fmt.format(c.current), f"{c.change:+.1%}",
                      "REGRESSION" if c.regressed else "ok")
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    console.print(table)
    bad = [c for c in comparisons if c.regressed]
    if bad:
        said = (f"{c.name} failed" if c.failed is not None else f"{c.name} {c.change:+.1%}" for c in bad)
        click.echo(f"regression: {', '.join(said)} against {shown(path)} "
                   f"(allowed {max_regression:.0%})", err=True)
        return EXIT_REGRESSION
    return 0
