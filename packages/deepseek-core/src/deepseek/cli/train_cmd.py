"""``deepseek train`` and ``deepseek eval`` (``deepseek generate``: generate_cmd.py).

Nothing here imports torch at module level: ``deepseek --help`` stays fast. Bad input raises
:class:`deepseek.errors.UsageError` subclasses, which the root command prints as one line with
exit code 2.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import click

from deepseek.cli.context import command_host
from deepseek.cli.params import PATH, Device, count
from deepseek.cli.train_options import train_config_data
from deepseek.dtypes import DTYPE_NAMES
from deepseek.errors import shell_quoted, shown


def build_train_config(
    config_file: str | None,
    overrides: tuple[str, ...] = (),
    *,
    strategy: str | None = None,
    precision: str | None = None,
    max_steps: int | None = None,
    resume: str | None = None,
    trackers: tuple[str, ...] = (),
    host: Any = None,
) -> Any:
    """The validated Config ``deepseek train`` runs: the file (or, when resuming without one, the
    checkpoint's own config, else the defaults), then the options, then ``--set`` overrides;
    components are looked up on ``host`` (default: the process's plugin host)."""
    from deepseek.config.load import config_from_dict, read_toml

    data: dict[str, Any] = {}
    saved_state: dict[str, Any] = {}
    if config_file is not None:
        data = read_toml(config_file)
    if resume is not None:
        from deepseek.data.tokenizer import run_folder_of, with_run_tokenizer
        from deepseek.errors import CheckpointError
        from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint
        from deepseek.training.checkpoint_dirs import CheckpointWarning
        from deepseek.training.run_lock import live_run_holding

        try:
            with warnings.catch_warnings():  # a checkpoint passed over is said once, by the trainer's own lookup
                warnings.simplefilter("ignore", CheckpointWarning)
                directory = resolve_checkpoint(resume, resuming=True)
            # read once: a live job may prune this checkpoint meanwhile (the trainer then says it is busy)
            saved_state = read_trainer_state(directory)
        except CheckpointError as exc:  # one a live job is writing or pruning is not damaged: say it is busy
            raise live_run_holding(Path(resume)) or exc from None
        from deepseek.training.provenance import prefer_recorded

        if config_file is not None:  # a name several plugins now register: the one the run was trained with
            data = prefer_recorded(data, saved_state, host)
        else:
            saved = prefer_recorded(_saved_config(directory, saved_state), saved_state, host)  # its components' plugins
            # the setting is checked once --set has applied (_check_resumed_tokenizer)
            data = with_run_tokenizer(saved, run_folder_of(directory), saved_state, check_setting=False)
    merged = train_config_data(data, overrides, strategy=strategy, precision=precision, max_steps=max_steps,
                               trackers=trackers)
    if resume is None:
        return config_from_dict(merged, host=host)
    if config_file is not None:
        return config_from_dict(_kept_derived(merged, resume), host=host)
    import torch

    from deepseek.config.data_sizes import DataSizeError
    from deepseek.errors import ConfigError
    from deepseek.training.build import build_model
    from deepseek.training.checkpoint import TRAINER_FILE, check_weights_fit

    _check_resumed_tokenizer(merged, directory, saved_state)
    try:
        config = config_from_dict(merged, host=host)
        with torch.random.fork_rng(devices=[]):  # a model checks its nested tables (encoders) as it is built
            shapes = build_model(config, host=host, create_on=torch.device("meta"))
        check_weights_fit(shapes, directory)  # before a strategy takes memory for a model its weights do not fit
        return config
    except DataSizeError as exc:  # the data now needs a larger model than the checkpoint's
        if any(o.partition("=")[0].strip() == f"model.{exc.key}" for o in overrides):
            raise  # the size given on this command line is too small: the plain line names it
        raise ConfigError(f"--resume {directory}: the checkpoint's model has model.{exc.key} = {exc.have}, smaller "
                          f"than {exc.what} with this command's data settings; a resumed run keeps its model: resume "
                          "with the run's data settings, or start a new run") from exc
    except ConfigError as exc:  # the saved config, or an option given with --resume
        from deepseek.training.provenance import component_note

        if (overrides or strategy or precision or max_steps is not None or trackers) and _valid(data, host):
            raise  # the checkpoint's own config is fine: an option of this command is wrong, as its line says

        note = component_note(exc, saved_state)
        tail = ("if the file was edited or is damaged, resume from another checkpoint or pass the run's config.toml"
                if note is None else note)
        raise ConfigError(f"{directory / TRAINER_FILE} (the checkpoint's config, with this command's options): {exc}"
                          + (f"; {tail}" if tail else "")) from exc


def _valid(saved: dict[str, Any], host: Any) -> bool:
    """Whether a checkpoint's config, without this command's options, loads and builds its model."""
    import torch

    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError
    from deepseek.training.build import build_model

    try:
        config = config_from_dict(train_config_data(saved, ()), host=host)
        with torch.random.fork_rng(devices=[]):
            build_model(config, host=host, create_on=torch.device("meta"))
    except ConfigError:
        return False
    return True


def _kept_derived(data: dict[str, Any], resume: str) -> dict[str, Any]:
    """A config file resuming a run: the keys whose defaults follow others (``train.warmup_steps``
    from ``max_steps``, ``train.min_lr`` from ``lr``) keep the values the run recorded unless
    this command sets them, so ``--max-steps 200`` does not move a warm-up already under way. A
    checkpoint that cannot be read is left to the trainer to name."""
    from deepseek.errors import UsageError
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint

    train = data.get("train", {})
    if not isinstance(train, dict):
        return data  # refused by the config's own check
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            saved = (read_trainer_state(resolve_checkpoint(resume)).get("config") or {}).get("train") or {}
    except UsageError:
        return data
    kept = dict(train)
    if "warmup_steps" not in train and isinstance(saved.get("warmup_steps"), int):
        kept["warmup_steps"] = saved["warmup_steps"]
    if "min_lr" not in train and "lr" in saved and train.get("lr", saved["lr"]) == saved["lr"] \
            and isinstance(saved.get("min_lr"), (int, float)):
        kept["min_lr"] = saved["min_lr"]
    return {**data, "train": kept}


def _check_resumed_tokenizer(data: dict[str, Any], directory: Path, state: dict[str, Any]) -> None:
    """A ``data.tokenizer`` given with ``--resume`` that is not the tokenizer the checkpoint
    recorded: one line naming the tokenizer, before the model's vocabulary (which follows it)
    would be blamed."""
    from deepseek.data.bpe import tokenizer_file
    from deepseek.data.tokenizer import recorded_tokenizer, tokenizer_identity
    from deepseek.errors import ConfigError

    table = data.get("data")
    setting = table.get("tokenizer") if isinstance(table, dict) else None
    recorded = recorded_tokenizer(state)
    if not isinstance(setting, str) or not setting or recorded is None:
        return  # bytes now or then: the data position's own check says so
    try:
        found = tokenizer_identity(tokenizer_file(setting, "data.tokenizer"))
    except (OSError, ValueError):
        return  # unreadable: loading the config says so
    if found != recorded:
        raise ConfigError(f"data.tokenizer: {setting} is not the tokenizer {directory} was trained with ({found}, the "
                          f"checkpoint recorded {recorded}); resume without data.tokenizer (the run's own copy is "
                          "used), or start a new run with this tokenizer")


def _saved_config(directory: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The config a checkpoint was trained with (its ``trainer.json`` ``state``, validated)."""
    from deepseek.errors import CheckpointError
    from deepseek.training.checkpoint import TRAINER_FILE

    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{directory / TRAINER_FILE}: holds no config table; resume from an earlier checkpoint or "
            "pass the run's config.toml"
        )
    return config


def config_options(command: Any) -> Any:
    """The arguments that choose a training config, shared by ``train`` and ``config show``:
    ``[CONFIG.toml] --set --strategy --precision --resume --max-steps --tracker`` (see
    :func:`build_train_config`)."""
    decorators = [
        click.argument("config_file", required=False, type=PATH, metavar="[CONFIG.toml]"),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value, e.g. --set train.lr=1e-3 (repeatable); "
                          "--set '~table.key' removes one."),
        click.option("--strategy", metavar="NAME",
                     help="Parallelism strategy (see 'deepseek plugins list'); another one than the config's "
                          "starts [strategy] from its defaults (--set strategy.name=NAME keeps the file's keys)."),
        click.option("--precision", metavar="P", help="auto, fp32, bf16 or fp16."),
        click.option("--resume", type=PATH, metavar="PATH", help="Continue from a run folder or checkpoint folder."),
        click.option("--max-steps", type=int, metavar="N",  # its range is train.max_steps's rule
                     help="Total optimizer steps (train.max_steps)."),
        click.option("--tracker", "trackers", multiple=True, metavar="NAME",
                     help="Also log to this experiment tracker (added to logging.trackers; repeatable): "
                          "tensorboard, mlflow, wandb or a plugin's."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


@click.command("train")
@config_options
@click.option("--run-dir", type=PATH, metavar="DIR", help="Run folder (default runs/<timestamp>).")
@click.option("--quiet", is_flag=True, help="No progress bar and no line per evaluation (logging.progress = false).")
def train(
    config_file: str | None,
    overrides: tuple[str, ...],
    strategy: str | None,
    precision: str | None,
    resume: str | None,
    max_steps: int | None,
    trackers: tuple[str, ...],
    run_dir: str | None,
    quiet: bool,
) -> int | None:
    """Train a model. Without arguments: the tiny GPT on the embedded corpus (CPU, or a GPU
    when there is one), written to runs/<timestamp>. SIGTERM or SIGUSR1 stop it after the
    current step with a checkpoint and exit code 75 (continue with --resume)."""
    from deepseek.devices import use_default_cpu_threads
    from deepseek.training.preemption import early_signals

    # A stop request before the trainer takes the signals (torch's import, the config: seconds) is
    # recorded, not a death by the signal: the run then stops before its first step (exit code 75).
    click.get_current_context().with_resource(early_signals())
    from deepseek.arguments import command_line

    click.get_current_context().with_resource(command_line())  # messages name --resume, --run-dir, ...
    host = command_host()
    config = build_train_config(
        config_file, overrides, strategy=strategy, precision=precision, max_steps=max_steps, resume=resume,
        trackers=trackers, host=host,
    )
    use_default_cpu_threads()
    from deepseek.extras import check_importable
    from deepseek.paths import check_output, created_note
    from deepseek.training.checkpoint_io import WRITER_MODULES
    from deepseek.training.trainer import Trainer

    for module in WRITER_MODULES:  # before the run folder: not a failure at the first checkpoint save
        check_importable(module, needed_for="train (checkpoints are written with it)")

    # Checked here as well as by the trainer: before the model is built, and to name what it creates.
    missing: list[Path] = []
    if run_dir is not None:
        missing = check_output(run_dir, where="--run-dir", folder=True, host=host)
    elif resume is None:
        missing = check_output(config.logging.runs_dir, where="logging.runs_dir", folder=True, host=host)
    from deepseek.errors import RunComplete

    try:
        result = Trainer(config, run_dir=run_dir, resume=resume, quiet=quiet, host=host).fit()
    except RunComplete as done:  # a requeued job finding its run done: nothing written, exit 0
        note = ""
        chosen = max_steps is not None or any(o.partition("=")[0].strip() == "train.max_steps" for o in overrides)
        if config_file is None and not chosen and resume is not None:  # an edit of RUN/config.toml: said
            from deepseek.data.tokenizer import run_folder_of
            from deepseek.training.checkpoint import resolve_checkpoint
            from deepseek.training.run_folder import edited_length_note

            with warnings.catch_warnings():  # the checkpoint was found and said once already
                warnings.simplefilter("ignore")
                run = Path(run_dir) if run_dir is not None else run_folder_of(resolve_checkpoint(resume))
            note = edited_length_note(run, config.to_dict(), resume=Path(resume), named_run_dir=run_dir is not None)
        click.echo(f"{done}{note}", err=True)
        return None
    if result.stopped_by is not None:  # SIGTERM / SIGUSR1: every rank exits with the same code
        from deepseek.training.preemption import EXIT_PREEMPTED, stopped_line

        checkpoint = shown(_show_path(result.checkpoint)) if result.checkpoint is not None else None
        if result.is_global_zero:
            click.echo(stopped_line(result.stopped_by, result.step, checkpoint, shell_quoted(_show_path(result.run_dir))), err=True)
        return EXIT_PREEMPTED
    if not result.is_global_zero:
        return None
    if len(result.val_losses) > 1:
        (s0, v0), (s1, v1) = result.val_losses[0], result.val_losses[-1]
        click.echo(f"validation loss {v0:.3f} (step {s0}) -> {v1:.3f} (step {s1})")
    elif result.val_losses:
        s1, v1 = result.val_losses[0]
        click.echo(f"validation loss {v1:.3f} (step {s1})")
    others = {k: v for k, v in result.val_metrics.items() if k != "val_loss"}
    if others:
        click.echo("validation " + ", ".join(f"{k[4:]} {v:.4f}" for k, v in others.items()))
    tokens = result.metrics.get("tokens")
    seen = f"{tokens:,.0f} tokens" if tokens is not None else f"{result.metrics.get('samples', 0):,.0f} samples"
    if result.resumed_at is None:
        click.echo(f"{result.step} steps, {seen} in {result.seconds:.0f} s")
    else:  # the counts are the run's; the time is this session's
        click.echo(f"{result.step} steps, {seen} (steps {result.resumed_at + 1}-{result.step} after resuming "
                   f"at step {result.resumed_at}: {result.seconds:.0f} s)")
    click.echo(f"run folder: {shown(_show_path(result.run_dir))}{created_note([m for m in missing if m.resolve() != result.run_dir])}")
    if result.best_checkpoint is not None:
        m = result.monitor
        click.echo(f"best checkpoint: {shown(_show_path(result.best_checkpoint))} ({m['name']} {m['best']:.4f})")
    if result.checkpoint is not None and result.generates:
        run = shell_quoted(_show_path(result.run_dir))
        # "def " suits the default corpus (Python sources); other data: a new document, no prompt
        default_corpus = config.data.name == "text" and not getattr(config.data.options, "path", "")
        click.echo(f"try: {deepseek_command()} generate --checkpoint {run}" + (' "def "' if default_corpus else ""))


def _show_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def deepseek_command() -> str:
    """How to start deepseek again from this shell: ``deepseek`` when this process is the console
    script that ``deepseek`` finds on PATH, else this interpreter's path with ``-m deepseek`` (a
    run through ``python -m deepseek``, e.g. inside a nox session, whose folder the shell does not
    have on PATH)."""
    import shutil
    import sys

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    found = shutil.which("deepseek")
    if script is not None and script.name == "deepseek" and found and Path(found).resolve() == script.resolve():
        return "deepseek"
    return f"{shell_quoted(_show_path(Path(sys.executable).absolute()))} -m deepseek"


DTYPE_OPTION = click.option(
    "--dtype", type=click.Choice(list(DTYPE_NAMES)), default="fp32", show_default=True,
    help="Weights and KV cache in this dtype (bf16/fp16: GPU serving).")
STRATEGY_OPTION = click.option(
    "--strategy", metavar="NAME", default=None,
    help="Run under `deepseek launch -n N` with this strategy placing the model (tp: split by attention "
         "heads over the processes, KV cache too; pipeline: one stage per process, each caching its own "
         "blocks); the strategy picks the device. Default: one process.")


EVAL_OTHER_DATA = "--config FILE or --set data.KEY=VALUE"
"""What ``deepseek eval`` takes for data other than the weights' own (named when that no longer loads)."""


@click.command("eval")
@click.option("--checkpoint", "checkpoint", required=True, type=PATH, metavar="PATH",
              help="Run folder, checkpoint folder, exported .safetensors, or a folder written by import-hf.")
@click.option("--config", "config_file", type=PATH, metavar="FILE.toml",
              help="Evaluate on this config's [data] (its [model], when it has one, must describe the weights).")
@click.option("--set", "overrides", multiple=True, metavar="data.KEY=VALUE",
              help="Override a key of the evaluation data, e.g. --set 'data.val_files=[\"valid.jsonl\"]' "
                   "(repeatable).")
@click.option("--batches", type=count(), default=None, metavar="N",
              help="Validation batches (default: the data's data.eval_batches; 8 where that is 0, a run "
                   "trained without validation).")
@click.option("--device", type=Device(), default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@STRATEGY_OPTION
@DTYPE_OPTION
def evaluate(checkpoint: str, config_file: str | None, overrides: tuple[str, ...], batches: int | None, device: str,
             as_json: bool, strategy: str | None, dtype: str) -> None:
    """Validation loss (and perplexity, for tokens) of a trained, exported or imported model on
    its validation data: a run's own [data], the config.toml beside exported weights, or
    --config / --set; and how many batches, samples and tokens it was measured on."""
    from deepseek.arguments import command_line
    from deepseek.devices import use_default_cpu_threads
    from deepseek.training.run_eval import evaluate_run
    from deepseek.training.weights_source import DataChoice

    use_default_cpu_threads()
    with command_line():  # messages name --config, --set (deepseek.evaluate names its keywords)
        run = evaluate_run(checkpoint, device=device, batches=batches, host=command_host(),
                           data=DataChoice(config_file, overrides, EVAL_OTHER_DATA), strategy=strategy, dtype=dtype)
    if not run.is_global_zero:
        return
    done, origin = run.evaluated, run.origin
    if as_json:
        click.echo(json.dumps({"checkpoint": checkpoint, "weights": origin.kind, "step": origin.step,
                               "batches": done.batches, "samples": done.samples, "tokens": done.tokens,
                               **done.values}))
        return
    shown = ", ".join(f"{k} {v:.4f}" for k, v in done.values.items())
    click.echo(f"{shown} ({origin.describe()}, model {run.model_name})")
    tokens = f", {done.tokens:,} tokens" if done.tokens is not None else ""
    short = f" (of {run.asked} asked: the validation data holds no more)" if done.batches < run.asked else ""
    click.echo(f"{done.batches} batch{'es' if done.batches != 1 else ''}{short}, {done.samples:,} samples{tokens}")
