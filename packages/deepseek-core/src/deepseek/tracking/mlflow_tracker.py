"""The ``mlflow`` tracker: one MLflow run per training run, in a local store or on a server.

``tracking_uri``: a folder (``mlruns``, ``file:./mlruns``; MLflow's file store), a database
(``sqlite:///mlflow.db``; needs the full ``mlflow`` package, whose database backend
``mlflow-skinny`` lacks) or a tracking server (``http://host:5000``). The run records the
flattened config as params (``train.lr``), every metrics row with its step, and at the end
``loss.png``, ``config.toml`` and ``final_checkpoint.json`` as artefacts, plus the tag
``deepseek.final_checkpoint``. A server that cannot be reached fails the start within
``http_timeout_s``; later calls retry ``http_retries`` times. Needs ``mlflow-skinny``
(``pip install 'deepseek-core[mlflow]'``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek.config.validate import non_negative, positive
from deepseek.errors import ConfigError, UsageError
from deepseek.parsing import loads_json, read_text
from deepseek.tracking.tracker import RunInfo, Status, Tracker, require_library

SCHEMES = ("file", "sqlite", "http", "https")
"""The stores this tracker writes to (a plain folder is a ``file`` store)."""

_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


@dataclass(frozen=True)
class MLflowOptions:
    """``[trackers.mlflow]``."""

    tracking_uri: str = ""
    """Where runs are stored: a folder or ``file:`` URI, a ``sqlite:///`` database, or an
    ``http(s)://`` tracking server. Default: ``$MLFLOW_TRACKING_URI``, else ``file:./mlruns``."""
    experiment: str = "deepseek"
    """MLflow experiment the run belongs to (created when missing)."""
    run_name: str = ""
    """Name of the MLflow run (default: the run folder's name)."""
    http_timeout_s: float = field(default=10.0, metadata={"check": positive})
    """Seconds to wait for a tracking server per request (and for the check at start)."""
    http_retries: int = field(default=2, metadata={"check": non_negative})
    """Retries of a failed request to a tracking server after the start."""


def uri_scheme(uri: str) -> str:
    """The scheme of ``uri`` in lower case; ``""`` for a plain path (``C:\\runs`` included)."""
    head, sep, _ = uri.partition(":")
    return head.lower() if sep and len(head) > 1 and head.replace("+", "").isalnum() else ""


def store_uri(uri: str) -> str:
    """``uri`` with a plain or relative folder made an absolute ``file:`` URI."""
    scheme = uri_scheme(uri)
    if scheme == "file":
        rest = uri[len("file:"):]
        return uri if rest.startswith("//") else Path(rest).resolve().as_uri()
    if scheme in SCHEMES:
        return uri
    return Path(uri).resolve().as_uri()


def _check_uri(uri: str, where: str) -> None:
    scheme = uri_scheme(uri)
    if scheme and scheme not in SCHEMES:
        raise ConfigError(
            f"{where}: {uri!r} is not a store this tracker writes; give a folder, file:, sqlite:/// "
            "or http(s):// URI"
        )
    if scheme == "sqlite" and importlib.util.find_spec("sqlalchemy") is None:
        raise ConfigError(
            f"{where}: {uri!r} needs MLflow's database backend, which mlflow-skinny lacks; "
            "install it with: pip install mlflow, or use a folder such as file:./mlruns"
        )


class MLflowTracker(Tracker):
    """Logs the run to MLflow."""

    Options = MLflowOptions

    def __init__(self, options: MLflowOptions | None = None) -> None:
        super().__init__(options)
        self._client: Any = None
        self._run_id = ""
        self._uri = ""

    @classmethod
    def check(cls, options: MLflowOptions) -> None:
        require_library("mlflow", "mlflow", tracker="mlflow")
        if options.tracking_uri:
            _check_uri(options.tracking_uri, "trackers.mlflow.tracking_uri")

    @contextlib.contextmanager
    def _settings(self) -> Iterator[None]:
        """MLflow reads these from the environment at each call: set for our calls only."""
        values = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(self.options.http_timeout_s))),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.options.http_retries),
        }
        if self._uri.startswith("file:"):
            values["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store otherwise
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def start(self, run: RunInfo) -> None:
        given = self.options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "") or "file:./mlruns"
        where = "trackers.mlflow.tracking_uri" if self.options.tracking_uri else "MLFLOW_TRACKING_URI"
        _check_uri(given, where)
        self._uri = store_uri(given)
        if self._uri.startswith(("http:", "https:")):
            self._reach_server(where)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        with self._settings():
            client = MlflowClient(tracking_uri=self._uri)
            experiment = client.get_experiment_by_name(self.options.experiment)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else client.create_experiment(self.options.experiment))
            created = client.create_run(
                experiment_id, run_name=self.options.run_name or run.run_name,
                tags={"deepseek.run_dir": str(run.run_dir), "deepseek.start_step": str(run.start_step),
                      "deepseek.world_size": str(run.world_size)},
            )
            self._client, self._run_id = client, created.info.run_id
            params = [Param(k, str(v)) for k, v in run.params.items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                client.log_batch(self._run_id, params=params[i:i + 100])

    def _reach_server(self, where: str) -> None:
        """A request to the server's health endpoint: any HTTP answer will do, none is one line."""
        try:
            with urllib.request.urlopen(f"{self._uri.rstrip('/')}/health", timeout=self.options.http_timeout_s):
                pass
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UsageError(
                f"{where}: cannot reach the MLflow tracking server at {self._uri} ({reason}); start it "
                "('mlflow server'), fix the URI, or use a local folder such as file:./mlruns"
            ) from exc

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._settings():
            self._client.log_batch(self._run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_artifact(self, path: Path, kind: str) -> None:
        with self._settings():
            self._client.log_artifact(self._run_id, str(path))
            if kind == "checkpoint":

                pointer = loads_json(read_text(path))
                self._client.set_tag(self._run_id, "deepseek.final_checkpoint", pointer["path"])

    def finish(self, status: Status) -> None:
        if self._client is not None:
            with self._settings():
                self._client.set_terminated(self._run_id, _STATUS[status])
            self._client = None
