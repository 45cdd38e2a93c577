"""What a run writes about itself: JSONL metrics, a progress bar, a plot (experiment trackers such
as TensorBoard: :mod:`deepseek.tracking`).

Only the global-zero rank creates these objects with ``enabled=True``; elsewhere they do nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from deepseek import durable
from deepseek.parsing import loads_json, open_file

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl``: JSON objects with a whole ``step`` >= 0, one a line. A torn
    last line (a crash in the middle of a write: not JSON and without its closing newline, which
    every record is written with) after at least one record is ignored with a
    :class:`MetricsWarning` naming it; any other line that is not such a record, a complete last
    line or a torn one that is the file's only line too (a run read back has written a record
    before any crash could tear one), is a UsageError naming the file and the line."""
    return MetricsTail(path).read(final=True)


class MetricsTail:
    """The records of a ``metrics.jsonl`` another process may still be appending to (a study's
    trial), read as :func:`read_metrics` reads them: each :meth:`read` reads only the lines added
    since the last one, through :func:`~deepseek.parsing.open_file` (a FIFO or a folder is a
    UsageError naming the file, never a wait), at most :data:`MAX_RECORD_BYTES` a line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reset(None)

    def _reset(self, file: tuple[int, int] | None) -> None:
        """Nothing read yet of the file ``(device, inode)``."""
        self._records: list[dict[str, Any]] = []
        self._file = file
        self._offset = 0  # bytes of it read: whole lines
        self._number = 0  # lines of it read

    def read(self, final: bool = False) -> list[dict[str, Any]]:
        """Every record of the file as it is now (a copy). A last line without its newline is a
        record still being written, read by a later call, unless ``final`` (the writer is done):
        then it is a torn line, as :func:`read_metrics` says. A file replaced (a resumed run cuts
        its records back to its checkpoint through a new file) or cut shorter is read again from
        its start; no file: no records."""
        from deepseek.errors import UsageError

        p = self.path
        if not p.exists() and not p.is_symlink():  # exists() is False for a loop of links too
            self._reset(None)
            return []
        try:
            with open_file(p) as fh:  # line by line: a line is at most MAX_RECORD_BYTES, whatever the file
                st = os.fstat(fh.fileno())
                if (st.st_dev, st.st_ino) != self._file or st.st_size < self._offset:
                    self._reset((st.st_dev, st.st_ino))
                fh.seek(self._offset)
                while raw := fh.readline(MAX_RECORD_BYTES + 1):
                    whole = raw.endswith(b"\n")
                    if not (whole or final or len(raw) > MAX_RECORD_BYTES):
                        break  # being written: the next read takes it whole
                    number = self._number + 1
                    # torn: a last line (a line short of the limit without its newline is at the end
                    # of the file) after a record
                    record = _record(p, number, raw, torn=not whole and number > 1)
                    if record is not None:
                        self._records.append(record)
                    self._number, self._offset = number, self._offset + len(raw)
        except OSError as exc:  # a folder, a FIFO, a loop of symbolic links, no permission
            raise UsageError(f"{p}: cannot read the run's metrics ({exc.strerror}); make it a readable file "
                             "or start a new run") from exc
        return list(self._records)


MAX_RECORD_BYTES = 1 << 20
"""The longest ``metrics.jsonl`` line read (a record is a few hundred bytes)."""


def _record(path: Path, number: int, raw: bytes, torn: bool) -> dict[str, Any] | None:
    """Line ``number`` of ``path`` (``raw``, its newline included) as a metrics record; ``None``
    when it is ``torn`` and no JSON (a :class:`MetricsWarning` names it)."""
    from deepseek.errors import UsageError

    if len(raw.rstrip(b"\r\n")) > MAX_RECORD_BYTES:
        raise UsageError(f"{path}:{number}: longer than {MAX_RECORD_BYTES:,} bytes, not a metrics record; "
                         f"{_METRICS_FIX}")
    record, parsed = None, False
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
        record, parsed = loads_json(line), True
    except UnicodeDecodeError as exc:
        if not torn:
            raise UsageError(f"{path}:{number}: cannot read the run's metrics ({exc}); {_METRICS_FIX}") from exc
        line = raw.decode("utf-8", errors="replace")
    except json.JSONDecodeError:
        pass
    if not parsed and torn:
        import warnings

        warnings.warn(f"{path}:{number}: ignoring a half-written last line (the run stopped while writing "
                      f"it): {line[:60]!r}", MetricsWarning, stacklevel=2)
        return None
    step = record.get("step") if isinstance(record, dict) else None
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        raise UsageError(
            f"{path}:{number}: not a metrics record (a JSON object with a whole step >= 0): "
            f"{line[:60]!r}; {_METRICS_FIX}"
        )
    return record


_METRICS_FIX = "delete or repair that line (every line is one JSON record), or start a new run"


class MetricsWarning(UserWarning):
    """A ``metrics.jsonl`` line that was read past: a torn last line."""


class MetricsWriter:
    """Appends one JSON object per line to ``<run>/metrics.jsonl``."""

    def __init__(self, run_dir: str | os.PathLike[str], *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self._fh: Any = None
        self._unsynced = False  # records written since the last fsync
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run rewrites what followed its checkpoint; ``-1``:
        all, unread: a fresh run taking over the folder of a job that died before its first checkpoint)."""
        if not self.enabled:
            return
        kept = [r for r in read_metrics(self.path) if r["step"] <= step] if step >= 0 else []
        self._fh.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        durable.replace(tmp, self.path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (must contain ``step``)."""
        if not self.enabled:
            return
        self._fh.write(json.dumps(dict(record), default=float) + "\n")
        self._fh.flush()
        self._unsynced = True

    def sync(self) -> None:
        """Put every record written so far on disk (``fsync``): called before a checkpoint is
        committed, so that after a power cut the newest checkpoint never claims steps whose
        records were lost (a resume keeps the records up to its step and appends after them). Only
        where a record was written since the last one: a step costs no fsync, nor a second call."""
        if self._fh is not None and self._unsynced:
            durable.fsync_file(self._fh)
            self._unsynced = False

    def close(self) -> None:
        """Flush, put on disk (a checkpoint saved after the run ends claims these records: :meth:`sync`) and close."""
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None


class ProgressBar:
    """A rich progress bar on stderr: step, loss, the model's metrics, throughput (tokens/s when
    the data has tokens, else samples/s), time left."""

    def __init__(self, total: int, *, start: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[extra]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, loss="-", extra="", rate="-")
        self._progress.start()

    def update(self, step: int, record: Mapping[str, Any], metric_names: Iterable[str] = ()) -> None:
        """Move to ``step`` and show its loss, the named metrics and the throughput of ``record``."""
        if self._progress is None:
            return
        if "tokens_per_s" in record:
            rate = f"{record['tokens_per_s']:,.0f} tok/s"
        else:
            rate = f"{record.get('samples_per_s', 0.0):,.1f} samples/s"
        extra = "  ".join(f"{k} {record[k]:.4f}" for k in metric_names if k in record)
        self._progress.update(self._task, completed=step, loss=f"{record['loss']:.4f}", extra=extra, rate=rate)

    def log(self, message: str) -> None:
        """Print a line above the bar (or to stderr when the bar is off)."""
        if self._progress is not None:
            self._progress.console.print(message, highlight=False)

    def close(self) -> None:
        """Stop redrawing."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def plot_metrics(records: Iterable[Mapping[str, Any]], out: str | os.PathLike[str], title: str = "") -> Path:
    """Train and validation loss against step, and one more panel per model metric (those with a
    ``val_<name>`` in the records), as a PNG (matplotlib, Agg), written atomically."""
    import matplotlib.pyplot as plt

    fig = metrics_figure(records, title)
    try:
        target = Path(out)
        tmp = target.with_name(f".{target.name}.tmp")
        fig.savefig(tmp, format="png", bbox_inches="tight")
        durable.replace(tmp, target)
    finally:
        plt.close(fig)
    return target


def plot_run(run_dir: Path, model_name: str) -> Path:
    """Plot the run in ``run_dir`` (its ``metrics.jsonl``) into its :data:`PLOT_FILE`, titled by model and folder."""
    from deepseek.errors import one_line

    records = read_metrics(run_dir / METRICS_FILE)
    return plot_metrics(records, run_dir / PLOT_FILE, title=f"{model_name} - {one_line(run_dir.name)}")


def metrics_figure(records: Iterable[Mapping[str, Any]], title: str = "") -> Any:
    """The figure :func:`plot_metrics` writes (the caller closes it). The title (a run folder's
    name), the metric names and the legend are drawn as written: matplotlib would read ``$...$``
    in them as mathtext (a folder ``a$\\x$`` failed the plot, ``a$b$`` lost its dollars)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = list(records)
    names = sorted({k[4:] for r in rows for k in r if k.startswith("val_") and k != "val_loss"})
    fig, axes = plt.subplots(1, 1 + len(names), figsize=(7 + 4 * len(names), 4), dpi=100, squeeze=False)
    try:
        for ax, name in zip(axes[0], ["loss", *names], strict=True):
            train = [(r["step"], r[name]) for r in rows if name in r and _finite(r[name])]
            val = [(r["step"], r[f"val_{name}"]) for r in rows if _finite(r.get(f"val_{name}"))]
            if train:
                ax.plot(*zip(*train, strict=True), lw=1, alpha=0.8, label=f"train {name}")
            if val:
                ax.plot(*zip(*val, strict=True), "o-", lw=1.5, label=f"validation {name}")
            ax.set_xlabel("step")
            ax.set_ylabel(name, parse_math=False)
            ax.grid(alpha=0.3)
            if train or val:
                for text in ax.legend().get_texts():
                    text.set_parse_math(False)
        axes[0][0].set_title(title or "loss", parse_math=False)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def read_scalars(values: list[Any]) -> list[float]:
    """``values`` (0-dim tensors on any devices, or plain numbers) as floats, with one copy to the
    host per device."""
    import torch

    out: list[float | None] = [None if isinstance(v, torch.Tensor) else float(v) for v in values]
    by_device: dict[torch.device, list[int]] = {}
    for i, v in enumerate(values):
        if isinstance(v, torch.Tensor):
            by_device.setdefault(v.device, []).append(i)
    for indices in by_device.values():
        read = torch.stack([values[i].float().reshape(()) for i in indices]).tolist()
        for i, x in zip(indices, read, strict=True):
            out[i] = x
    return [float(x) for x in out]  # type: ignore[arg-type]


def read_interval(every_n_steps: int | None, device_type: str) -> int:
    """Steps between reads of the step metrics: ``logging.every_n_steps`` when set, else 1 on
    the CPU (a read costs nothing there) and 10 on an accelerator (each read is a host sync)."""
    if every_n_steps is not None:
        return every_n_steps
    return 1 if device_type == "cpu" else 10
