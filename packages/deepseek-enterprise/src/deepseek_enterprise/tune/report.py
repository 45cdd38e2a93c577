"""What a study leaves in its folder: ``best.toml`` (the best trial's config, which
``deepseek train`` runs as is), ``trials.json`` (every trial: state, value, values, notes),
``history.png`` and ``importances.png`` (Optuna's optimisation history and fANOVA parameter
importances), and the table printed at the end."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from deepseek import durable
from deepseek.errors import shown_markup
from deepseek_enterprise.tune.space import trial_data
from deepseek_enterprise.tune.tuner import format_value


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study as plain data, in order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
        last = max(t.intermediate_values) if t.intermediate_values else None
        rows.append({  # the trial's own fields last: a user attribute of the same name does not replace them
            **t.user_attrs,
            "number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
            "seconds": seconds, "last_step": last, "worker": t.user_attrs.get("worker"),
        })
    return rows


def summary(study: Any) -> dict[str, int]:
    """Trials by outcome: complete, pruned (by the pruner), skipped (not run), failed, interrupted."""
    out = {"complete": 0, "pruned": 0, "skipped": 0, "failed": 0, "interrupted": 0, "running": 0}
    for row in trial_rows(study):
        if row.get("interrupted"):
            out["interrupted"] += 1
        elif row.get("skipped"):
            out["skipped"] += 1
        elif row["state"] == "fail":
            out["failed"] += 1
        elif row["state"] in out:
            out[row["state"]] += 1
        elif row["state"] in ("running", "waiting"):
            out["running"] += 1
    return out


def best_trial(study: Any) -> Any | None:
    """The best complete trial, or None."""
    try:
        return study.best_trial
    except ValueError:
        return None


def write_best(study: Any, base: dict[str, Any], path: Path, objective: str, config_file: str) -> Path | None:
    """``best.toml``: the base config with the best trial's values (a comment says which)."""
    import tomli_w

    from deepseek.training.checkpoint import atomic_write_text

    best = best_trial(study)
    if best is None:
        return None
    header = (f"# deepseek tune: study {study.study_name!r}, best trial {best.number}: {objective} = {best.value:.6g}\n"
              f"# {config_file} with: " + ", ".join(f"{k} = {v!r}" for k, v in best.params.items()) + "\n")
    atomic_write_text(path, header + tomli_w.dumps(trial_data(base, dict(best.params))))
    return path


def write_trials(study: Any, path: Path) -> Path:
    """``trials.json``: every trial."""
    from deepseek.training.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps({"study": study.study_name, "direction": study.direction.name.lower(),
                                        "summary": summary(study), "trials": trial_rows(study)}, indent=1, default=str))
    return path


def write_plots(study: Any, folder: Path) -> list[str]:
    """``history.png`` and ``importances.png``; returns notes for plots that could not be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    notes = []
    for name, draw in (("history.png", vis.plot_optimization_history), ("importances.png", vis.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw(study)
            figure = getattr(ax, "figure", None) or ax.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            tmp = folder / f".{name}.tmp"  # renamed when whole: a kill mid-write leaves no half a PNG under the name
            try:
                figure.savefig(tmp, format="png", dpi=100)
                durable.replace(tmp, folder / name)
            finally:
                tmp.unlink(missing_ok=True)
                plt.close(figure)
        except Exception as exc:  # too few finished trials, one parameter without spread...
            notes.append(f"{name}: not drawn ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    return notes


def print_table(study: Any, objective: str, console: Any = None) -> None:
    """The trials table (state, value, parameters, note)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=160)
    rows = trial_rows(study)
    names = sorted({k for r in rows for k in r["params"]})
    best = best_trial(study)
    table = Table(title=f"study {study.study_name}: {shown_markup(objective)} ({study.direction.name.lower()})", title_justify="left")
    for col in ("#", "state", objective, *names, "s", "note"):
        table.add_column(shown_markup(col), justify="left" if col in ("state", "note") else "right", overflow="fold")
    for r in rows:
        state = "skipped" if r.get("skipped") else ("interrupted" if r.get("interrupted") else r["state"])
        mark = " *" if best is not None and r["number"] == best.number else ""
        value = f"{format_value(r['value'])}{mark}" if r["value"] is not None else "-"
        note = str(r.get("note", ""))
        if r.get("baseline"):
            note = "base config" + (f"; {note}" if note else "")
        if r.get("copied_from") is not None:
            state = "copied"
        if r.get("retry_of") is not None:
            note = f"re-run of {r['retry_of']}" + (f"; {note}" if note else "")
        extra = [f"{k} {r[k]}" for k in ("peak_gib", "advisor_gib", "mfu") if k in r]
        note = "; ".join(x for x in (note, ", ".join(extra)) if x)
        table.add_row(str(r["number"]), state, value, *(_cell(r["params"].get(n)) for n in names),
                      f"{r['seconds']:.0f}" if r["seconds"] is not None else "-", shown_markup(note[:120]))
    console.print(table)


def _cell(value: Any) -> str:
    """A parameter's value in the table: a choice from the user's search space is printed as
    given, never read as rich markup."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else shown_markup(value)
