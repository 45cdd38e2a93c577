"""The built-in experiment trackers with their real libraries: a tiny GPT trains a few steps on
CPU, then what MLflow (a local store), W&B (offline) and TensorBoard recorded is read back with
their own readers and compared with the run's ``metrics.jsonl``, ``config.toml`` and final
checkpoint. Only rank 0 logs (``deepseek launch -n 2 -- train --strategy ddp``); a tracking
server that cannot be reached fails in one line before the first step."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from _eco_cli import run as run_here

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.tracking import TrackerWarning
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

torch.set_num_threads(1)

TINY: dict[str, Any] = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 16},
    "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 4, "warmup_steps": 1, "eval_interval": 2, "lr": 3e-3},
    "precision": {"dtype": "fp32"},
    "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 0, "keep_last": 1},
}
CLI_TINY = [
    "--set", "model.d_model=32", "--set", "model.n_heads=2", "--set", "model.n_layers=1",
    "--set", "model.max_seq_len=16", "--set", "data.seq_len=16", "--set", "data.batch_size=4",
    "--set", "data.eval_batches=1", "--set", "data.shuffle_buffer=16", "--set", "train.max_steps=3",
    "--set", "train.warmup_steps=1", "--set", "train.eval_interval=0", "--set", 'precision.dtype="fp32"',
    "--set", "logging.plot=false", "--set", "checkpoint.interval=0", "--quiet",
]


def train(tmp_path: Path, trackers: dict[str, dict[str, Any]], **logging: Any) -> tuple[Path, list[dict[str, Any]]]:
    data = {**TINY, "logging": {"progress": False, "trackers": list(trackers), **logging}, "trackers": trackers}
    result = Trainer(config_from_dict(data), run_dir=tmp_path / "run", quiet=True).fit()
    return result.run_dir, read_metrics(result.run_dir / "metrics.jsonl")


def column(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if key in r]


# --------------------------------------------------------------------------- MLflow


def test_mlflow_local_store_holds_params_every_step_and_the_artefacts(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    run_dir, rows = train(tmp_path, {"mlflow": {"tracking_uri": str(tmp_path / "mlruns"), "experiment": "tiny"}})
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses to read its file store otherwise
    try:
        client = MlflowClient(tracking_uri=store)
        experiment = client.get_experiment_by_name("tiny")
        (run,) = client.search_runs([experiment.experiment_id])
        run_id = run.info.run_id
        assert (run.info.run_name, run.info.status) == ("run", "FINISHED")
        params = run.data.params
        assert params["train.lr"] == "0.003" and params["model.d_model"] == "32"
        assert params["trackers.mlflow.experiment"] == "tiny" and params["logging.trackers"] == '["mlflow"]'
        for key in ("loss", "lr", "grad_norm", "val_loss"):
            history = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            assert sorted(history) == column(rows, key), key
        assert [s for s, _ in column(rows, "loss")] == [1, 2, 3, 4]
        assert [s for s, _ in column(rows, "val_loss")] == [0, 2, 4]
        assert sorted(a.path for a in client.list_artifacts(run_id)) == [
            "config.toml", "final_checkpoint.json", "loss.png"]
        out = Path(client.download_artifacts(run_id, "", str(tmp_path / "download")))
        assert (out / "config.toml").read_bytes() == (run_dir / "config.toml").read_bytes()
        assert (out / "loss.png").read_bytes() == (run_dir / "loss.png").read_bytes()
        pointer = json.loads((out / "final_checkpoint.json").read_text())
        assert pointer["path"] == str((run_dir / "checkpoints" / "step-4").resolve()) and pointer["step"] == 4
        assert run.data.tags["deepseek.final_checkpoint"] == pointer["path"]
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def test_a_resumed_run_is_a_new_mlflow_run_from_the_checkpoint_step(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Both trainings in this process (``_eco_cli.run``, core's built-ins: the tracker is core's),
    in the environment :func:`cli` gives its processes."""
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    args = [*CLI_TINY, "--tracker", "mlflow", "--set", f'trackers.mlflow.tracking_uri="{store}"']
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("DEEPSEEK_")]:
        monkeypatch.delenv(key)
    host = PluginHost(PluginSettings(autoload=False))
    code, _, err = run_here(host, "train", *args, "--set", "train.max_steps=2", "--run-dir", "run")
    assert code == 0, err
    code, _, err = run_here(host, "train", *args, "--set", "train.max_steps=4", "--resume", "run")
    assert code == 0, err
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=store)
        runs = client.search_runs([client.get_experiment_by_name("deepseek").experiment_id], order_by=["start_time"])
        assert [r.data.tags["deepseek.start_step"] for r in runs] == ["0", "2"]
        assert [r.data.params["train.max_steps"] for r in runs] == ["2", "4"]
        rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
        history = [sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, "loss")) for r in runs]
        assert history == [column(rows, "loss")[:2], column(rows, "loss")[2:]]
        assert json.loads((tmp_path / "run" / "final_checkpoint.json").read_text())["step"] == 4
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


class AtStep:
    """A lifecycle hook doing ``action(trainer)`` once the given step's metrics are read."""

    def __init__(self, step: int, action: Any) -> None:
        self.step, self.action = step, action

    @hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):  # noqa: ANN001, ANN201
        if step == self.step:
            self.action(trainer)


def train_with(plugin: object, tmp_path: Path, trackers: dict[str, dict[str, Any]]) -> Any:
    host = PluginHost(PluginSettings(autoload=False))
    host.register_plugin(plugin, dist="deepseek-at-step")
    data = {**TINY, "logging": {"progress": False, "trackers": list(trackers)}, "trackers": trackers}
    return Trainer(config_from_dict(data, host=host), run_dir=tmp_path / "run", quiet=True, host=host).fit()


def test_a_store_lost_mid_run_disables_the_tracker_and_training_goes_on(tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    with pytest.warns(TrackerWarning, match=r"tracker 'mlflow' \(deepseek-core [^)]+, registered by [\w.]+\): log_metrics at step 2 failed \(") as caught:
        result = train_with(AtStep(2, lambda _: shutil.rmtree(store)), tmp_path, {"mlflow": {"tracking_uri": str(store)}})
    assert len([w for w in caught if issubclass(w.category, TrackerWarning)]) == 1
    assert result.step == 4 and (result.run_dir / "checkpoints" / "step-4" / "model.safetensors").is_file()
    assert [r["step"] for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]


def test_a_stop_request_ends_the_mlflow_run_as_killed_with_its_artefacts(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = (tmp_path / "mlruns").as_uri()
    result = train_with(AtStep(2, lambda _: os.kill(os.getpid(), signal.SIGUSR1)), tmp_path,
                        {"mlflow": {"tracking_uri": store}})
    assert result.stopped_by is not None and result.step == 2
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=store)
        (run,) = client.search_runs([client.get_experiment_by_name("deepseek").experiment_id])
        assert run.info.status == "KILLED"
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["config.toml", "final_checkpoint.json"]
        assert run.data.tags["deepseek.final_checkpoint"] == str((result.run_dir / "checkpoints" / "step-2").resolve())
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}, "WANDB_MODE": "offline",
           "DS_ACCELERATOR": "cpu", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "deepseek", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_an_unreachable_tracking_server_fails_in_one_line_before_training(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = cli("train", *CLI_TINY, "--tracker", "mlflow", "--set", f'trackers.mlflow.tracking_uri="{uri}"',
               "--run-dir", "run", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 60
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: trackers.mlflow.tracking_uri: cannot reach the MLflow tracking server at {uri} (")
    assert "Traceback" not in proc.stderr
    assert read_metrics(tmp_path / "run" / "metrics.jsonl") == []
    assert not list((tmp_path / "run").glob("checkpoints/step-*"))


def test_only_rank_zero_logs_under_launch(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    proc = cli("launch", "-n", "2", "--", "train", "--strategy", "ddp", *CLI_TINY, "--tracker", "mlflow",
               "--set", f'trackers.mlflow.tracking_uri="{(tmp_path / "mlruns").as_uri()}"',
               "--run-dir", "run", cwd=tmp_path, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
        (run,) = client.search_runs([client.get_experiment_by_name("deepseek").experiment_id])
        assert run.data.tags["deepseek.world_size"] == "2" and run.data.params["strategy.name"] == "ddp"
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")]
        assert sorted(history) == column(read_metrics(tmp_path / "run" / "metrics.jsonl"), "loss")
        assert [s for s, _ in sorted(history)] == [1, 2, 3]
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


# --------------------------------------------------------------------------- Weights & Biases


def wandb_records(path: Path, timeout: float = 60.0) -> list[Any]:
    """The records of a W&B ``.wandb`` transaction log: a 7-byte header (``:W&B``, magic, version),
    then 32 KiB blocks of chunks (crc32 of type and payload, length, type: 1 full, 2 first, 3 middle,
    4 last), each record a ``wandb_internal_pb2.Record``.

    ``run.finish()`` only *informs* the wandb-core service that the run is done; the service closes
    the log afterwards, so the file may still be growing when training returns. The log is read again
    until every chunk is whole (length and checksum) and it ends with the run's ``exit`` record."""
    from wandb.proto import wandb_internal_pb2 as pb

    def parse(data: bytes) -> list[Any] | None:
        block, pos, chunks, out = 32768, 7, b"", []
        while pos + 7 <= len(data):
            left = block - pos % block
            if left < 7:
                pos += left
                continue
            crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            pos += 7
            if length == 0 and kind == 0:
                pos += left - 7
                continue
            payload = data[pos:pos + length]
            if len(payload) < length or zlib.crc32(bytes([kind]) + payload) != crc:
                return None  # a chunk still being written
            chunks += payload
            pos += length
            if kind in (1, 4):
                record = pb.Record()
                record.ParseFromString(chunks)
                out.append(record)
                chunks = b""
        return out if out and out[-1].WhichOneof("record_type") == "exit" else None

    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        assert data[:4] == b":W&B"
        records = parse(data)
        if records is not None:
            return records
        assert time.monotonic() < deadline, f"{path} did not end with a whole exit record within {timeout} s"
        time.sleep(0.2)


def test_wandb_offline_run_holds_config_every_step_and_the_artefacts(tmp_path: Path) -> None:
    run_dir, rows = train(tmp_path, {"wandb": {"project": "tiny", "tags": ["ci"]}})
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(log)
    by_type: dict[str, list[Any]] = {}
    for r in records:
        by_type.setdefault(r.WhichOneof("record_type"), []).append(r)
    (run,) = [r.run for r in by_type["run"]]
    assert (run.project, run.display_name, list(run.tags)) == ("tiny", "run", ["ci"])
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["train.lr"] == 0.003 and config["model.d_model"] == 32 and config["trackers.wandb.project"] == "tiny"
    history: dict[int, dict[str, float]] = {}
    for r in by_type["history"]:
        item = {("/".join(i.nested_key) or i.key): json.loads(i.value_json) for i in r.history.item}
        history.setdefault(int(item["_step"]), {}).update(item)
    assert sorted(history) == [0, 1, 2, 3, 4]
    for row in rows:  # the train row and the evaluation at the same step share W&B's row
        assert {k: history[row["step"]][k] for k in row if k != "step"} == {k: v for k, v in row.items() if k != "step"}
    artifacts = {a.artifact.type: a.artifact for a in by_type["artifact"]}
    assert sorted(artifacts) == ["checkpoint", "config", "plot"]
    assert [e.path for e in artifacts["config"].manifest.contents] == ["config.toml"]
    assert [e.path for e in artifacts["plot"].manifest.contents] == ["loss.png"]
    summary = {("/".join(u.nested_key) or u.key): json.loads(u.value_json)
               for r in by_type["summary"] for u in r.summary.update}
    assert summary["final_checkpoint"] == str((run_dir / "checkpoints" / "step-4").resolve())
    assert summary["final_checkpoint_step"] == 4
    assert [r.exit.exit_code for r in by_type["exit"]] == [0]


@pytest.mark.parametrize("quiet", [True, False])
def test_wandb_keeps_its_banner_to_itself_under_quiet(tmp_path: Path, quiet: bool) -> None:
    """``--quiet`` leaves stderr to errors: W&B's own lines (offline mode, where the run is saved)
    print only without it; the run is written either way."""
    args = [a for a in CLI_TINY if a != "--quiet"] + (["--quiet"] if quiet else [])
    result = cli("train", "--set", 'logging.trackers=["wandb"]', *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("wandb:" in result.stderr) is not quiet, result.stderr
    assert list(tmp_path.glob("runs/*/wandb/offline-run-*/run-*.wandb"))


def test_a_wandb_dir_that_cannot_be_written_fails_in_one_line(tmp_path: Path) -> None:
    """wandb warned, wrote under /tmp instead and the run went on (exit 0)."""
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("needs a read-only mount (root, mount(8)): permissions do not stop root's writes")
    try:
        proc = cli("train", *CLI_TINY, "--tracker", "wandb", "--set", f'trackers.wandb.dir="{ro}"', "--run-dir", "run",
                   cwd=tmp_path)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    assert proc.returncode == 2, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: trackers.wandb.dir: {ro} is not writable ("), line
    assert not list((tmp_path / "run").glob("checkpoints/step-*"))


# --------------------------------------------------------------------------- TensorBoard


@pytest.mark.parametrize("spelling", ["trackers", "tensorboard = true"])
def test_tensorboard_events_hold_every_step(spelling: str, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if spelling == "trackers":
        run_dir, rows = train(tmp_path, {"tensorboard": {}})
    else:  # the old spelling, read as the tensorboard tracker
        data = {**TINY, "logging": {"progress": False, "tensorboard": True}}
        config = config_from_dict(data)
        assert (config.logging.trackers, config.logging.tensorboard) == (("tensorboard",), False)
        run_dir = Trainer(config, run_dir=tmp_path / "run", quiet=True).fit().run_dir
        rows = read_metrics(run_dir / "metrics.jsonl")
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    for key in ("loss", "val_loss", "lr"):
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in column(rows, key)]
        assert [v for _, v in got] == pytest.approx([v for _, v in column(rows, key)], rel=1e-6)
    (image,) = events.Images("loss")
    assert image.step == 4 and image.encoded_image_string[:4] == b"\x89PNG"


def test_a_resume_after_a_kill_shows_each_step_once_in_tensorboard(tmp_path: Path) -> None:
    """A run killed after step 4 whose last checkpoint is step 2 (step-2 passed to ``resume``, as
    ``--resume`` finds it when the kill came before step 4's checkpoint): the resumed run logs steps
    3-4 again, into a second event file of the same folder, and TensorBoard shows one point a step,
    through both its loaders (the server's ``plugin_event_accumulator`` and the older one)."""
    from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
    from tensorboard.util.tensor_util import make_ndarray

    data = {**TINY, "logging": {"progress": False, "trackers": ["tensorboard"]},
            "checkpoint": {"interval": 2, "keep_last": 2}}
    run_dir = Trainer(config_from_dict(data), run_dir=tmp_path / "run", quiet=True).fit().run_dir
    folder = str(run_dir / "tensorboard")
    killed_at = event_accumulator.EventAccumulator(folder).Reload().Scalars("loss")[-1].wall_time
    Trainer(config_from_dict(data), resume=run_dir / "checkpoints" / "step-2", quiet=True).fit()
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    rows = read_metrics(run_dir / "metrics.jsonl")
    events = event_accumulator.EventAccumulator(folder, size_guidance={"scalars": 0, "images": 0}).Reload()
    served = plugin_event_accumulator.EventAccumulator(folder, size_guidance={"tensors": 0}).Reload()
    for key in ("loss", "val_loss", "lr"):  # the server's tag "loss" holds the image too: not that one
        for got in (events.Scalars(key), *([served.Tensors(key)] if key != "loss" else [])):
            assert [e.step for e in got] == [s for s, _ in column(rows, key)], key
            values = [e.value if hasattr(e, "value") else float(make_ndarray(e.tensor_proto)) for e in got]
            assert values == pytest.approx([v for _, v in column(rows, key)], rel=1e-6)
            assert all(e.wall_time > killed_at for e in got if e.step > 2), key  # the resumed run's points
    assert [image.step for image in events.Images("loss")] == [4]
    assert [e.step for e in served.Tensors("status/text_summary")] == [4]


def test_config_show_lists_the_trackers_and_their_options(tmp_path: Path) -> None:
    proc = cli("config", "show", "--tracker", "mlflow", "--tracker", "wandb", "--set", "logging.tensorboard=true",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'trackers = [\n    "mlflow",\n    "wandb",\n    "tensorboard",\n]\ntensorboard = false' in proc.stdout
    assert '[trackers.mlflow]\ntracking_uri = ""\nexperiment = "deepseek"' in proc.stdout
    assert '[trackers.wandb]\nproject = "deepseek"' in proc.stdout and "[trackers.tensorboard]" in proc.stdout
    bad = cli("config", "show", "--tracker", "mlfow", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: logging.trackers: unknown tracker 'mlfow'; did you mean 'mlflow'? available: mlflow, "
        "tensorboard, wandb (see 'deepseek plugins list')")
