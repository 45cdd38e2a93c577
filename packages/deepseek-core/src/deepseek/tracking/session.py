"""The trackers of one run, as the trainer drives them on the global-zero rank.

:meth:`TrackingSession.open` creates every tracker named in ``logging.trackers`` with its options
and starts it: a failure there stops the run before its first step with one line (every tracker
already started is closed as ``failed``). Afterwards each call is guarded: a tracker that raises
warns once (:class:`~deepseek.tracking.tracker.TrackerWarning`) and is disabled for the rest of the
run, so a tracker never costs a training run. On other ranks the session is empty.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek import durable
from deepseek.errors import UsageError
from deepseek.plugins.calls import class_calls
from deepseek.plugins.records import describe_error, one_line
from deepseek.run_files import POINTER_FILE
from deepseek.tracking.resolve import table_path
from deepseek.tracking.tracker import RunInfo, Status, Tracker, TrackerWarning

if TYPE_CHECKING:
    from deepseek.config.schema import Config
    from deepseek.plugins.host import PluginHost

def flat_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested tables flattened to ``section.key``; lists become their JSON text."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            out[name] = value
        else:
            out[name] = json.dumps(value, default=str)
    return out


class TrackingSession:
    """Started trackers as ``(registered name, tracker)`` pairs, each disabled at its first error."""

    def __init__(self, trackers: list[tuple[str, Tracker]] | None = None,
                 origins: Mapping[str, str] | None = None) -> None:
        self._active = list(trackers or [])
        self._labels = dict(origins or {})  # name -> its component's label, naming the distribution in warnings

    @classmethod
    def open(cls, config: Config, host: PluginHost, run: RunInfo, *, enabled: bool) -> TrackingSession:
        """Create and start the configured trackers (none where ``enabled`` is false: not rank 0)."""
        if not enabled:
            return cls()
        started: list[tuple[str, Tracker]] = []
        origins: dict[str, str] = {}
        try:
            for name in config.logging.trackers:
                component = host.resolve("tracker", name)
                origins[name] = component.label
                with class_calls(component, "__init__"):  # a plugin's bug: one line naming it; core's keep their traceback
                    tracker = component.load()(config.trackers.options[name])
                started.append((name, tracker))  # finished as failed should its start fail
                try:
                    tracker.start(run)
                except UsageError:
                    raise
                except Exception as exc:
                    raise UsageError(
                        f"{table_path(name)}: the {name!r} tracker ({component.dist} {component.version}) could not start "
                        f"({describe_error(exc)}); "
                        f"check [{table_path(name)}] (docs/tracking.md) or remove {name!r} from logging.trackers"
                    ) from exc
        except BaseException:
            for _, tracker in started:
                try:
                    tracker.finish("failed")
                except Exception:  # noqa: BLE001 - the start error is the one to report
                    pass
            raise
        return cls(started, origins)

    @property
    def names(self) -> list[str]:
        """The trackers still active."""
        return [name for name, _ in self._active]

    def _each(self, what: str, call: Callable[[Tracker], Any]) -> None:
        for name, tracker in list(self._active):
            try:
                call(tracker)
            except Exception as exc:  # noqa: BLE001 - a tracker never costs the training run
                self._active.remove((name, tracker))
                warnings.warn(
                    f"{self._labels.get(name, f'tracker {name!r}')}: {what} failed ({one_line(describe_error(exc))}); "
                    "it is disabled "
                    "for the rest of this run, training goes on",
                    TrackerWarning, stacklevel=3,
                )
                if what != "finish":
                    try:
                        tracker.finish("failed")
                    except Exception:  # noqa: BLE001
                        pass

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """One ``metrics.jsonl`` row: its numbers at its ``step``."""
        if not self._active:
            return
        step = int(record["step"])
        values = {k: float(v) for k, v in record.items()
                  if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._each(f"log_metrics at step {step}", lambda t: t.log_metrics(step, values))

    def end(self, status: Status, *, run_dir: Path, checkpoint: Path | None, step: int) -> None:
        """Log the artefacts (unless the run failed) and finish every tracker with ``status``."""
        if not self._active:
            return
        if status != "failed":
            try:
                artifacts = self._artifacts(run_dir, checkpoint, step)
            except OSError as exc:
                warnings.warn(f"trackers: cannot write {POINTER_FILE} in {run_dir} ({exc}); the artefacts "
                              "are not logged", TrackerWarning, stacklevel=2)
                artifacts = []
            for path, kind in artifacts:
                self._each(f"log_artifact {path.name}", lambda t, p=path, k=kind: t.log_artifact(p, k))
        self._each("finish", lambda t: t.finish(status))
        self._active = []

    @staticmethod
    def _artifacts(run_dir: Path, checkpoint: Path | None, step: int) -> list[tuple[Path, str]]:
        from deepseek.training.metrics import PLOT_FILE

        out = [(run_dir / PLOT_FILE, "plot"), (run_dir / "config.toml", "config")]
        out = [(p, k) for p, k in out if p.is_file()]
        if checkpoint is not None:
            pointer = run_dir / POINTER_FILE
            durable.write_text(pointer, json.dumps({
                "path": str(checkpoint.resolve()),
                "relative_path": os.path.relpath(checkpoint, run_dir),
                "step": step,
            }, indent=1) + "\n")
            out.append((pointer, "checkpoint"))
        return out
