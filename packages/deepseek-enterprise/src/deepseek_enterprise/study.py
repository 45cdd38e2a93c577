"""``deepseek multimodal study``: the fusion figures, measured honestly.

For each task and seed it trains, with the same step budget, the unimodal models (vision, audio,
text) and the fused models (``late``, ``concat``, ``cross_attention`` or any registered fusion method,
with one of the recipes of
:mod:`deepseek_enterprise.study_recipes`, which also writes each run's config)
through the ordinary trainer (validation on the ``val`` split only), then evaluates every model once on the
held-out ``test`` split: fused accuracy, each modality's own accuracy, and for fused models the
accuracy with each modality missing. The ceiling of the complementary task (its answer needs the
image's digit and the spoken digit both read right) is the product of the vision and audio
models' accuracies on the redundant task (same corruption; errors taken as independent). Every
run keeps its validation accuracy per evaluation, which the table shows against steps. The study
also times batch-1 inference of every fused model it trains (p50/p90) and its peak memory.
``deepseek multimodal table`` merges result files.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from deepseek.errors import shown
from deepseek_enterprise.study_recipes import (
    CALIBRATED,
    DEFAULT_RECIPE,
    MODALITY_ORDER,
    is_ensemble,
    model_of,
    recipe_keys,
    run_order,
    starts_from_unimodal,
    study_config,
    train_sources,
)

CALIBRATION_BATCHES = 64
"""Batches of the ``blend`` part the calibration weights are fitted on (64 x the study's batch)."""


def split_metrics(module: Any, data: Any, device: Any, split: str = "test", missing: tuple[str, ...] = (),
                  limit: int | None = None) -> dict[str, float]:
    """Accuracy of ``module`` on ``split`` of dataset ``data`` (``missing``: modalities hidden; at
    most ``limit`` batches), keyed ``<split>_accuracy`` ..."""
    import dataclasses

    from deepseek.training.evaluation import evaluate_in_process
    from deepseek_enterprise.digits.dataset import MultimodalDigits

    options = dataclasses.replace(data.options, missing=tuple(missing))
    dataset = MultimodalDigits(options, batch_size=data.batch_size, seed=data.seed)
    values = evaluate_in_process(module, dataset.split_batches(split, limit), device=device, model_name="multimodal")
    return {f"{split}_" + k.removeprefix("val_"): v for k, v in values.items()}


def finished_model(run_dir: Path, config: Any, host: Any) -> tuple[Any, Any, Any]:
    """``(module, dataset, device)`` of a run whose training finished (``study_folder.take_up``):
    its newest checkpoint's weights in the model ``config`` builds, on the device the trainer would
    use, in eval mode, and the dataset ``config`` builds. What a kill after its last checkpoint
    left in its folder is tidied first, as resuming the finished run would
    (:func:`~deepseek.training.run_state.tidy_finished`). The checkpoint is read once, and held to
    record ``config`` (:func:`~deepseek_enterprise.finished_runs.records_config`, as ``take_up``
    judged it from its own read): the dataset built, its tokenizer check
    (``check_data_tokenizer``) and the row's figures are of the data the weights were trained on,
    or a one-line refusal where the checkpoint was replaced by one of another config since."""
    from deepseek.devices import resolve_device
    from deepseek.errors import UsageError
    from deepseek.training.build import build_dataset
    from deepseek.training.checkpoint import resolve_checkpoint
    from deepseek.training.inference import load_trained
    from deepseek.training.run_state import tidy_finished
    from deepseek.training.weights_source import check_data_tokenizer, read_source
    from deepseek_enterprise.finished_runs import records_config

    device, final = resolve_device(config.strategy.options.device), resolve_checkpoint(run_dir)
    tidy_finished(run_dir, final, config.checkpoint.keep_last)
    source = read_source(final)  # read once: data reading the run's tokenizer.json is held to its check
    if not records_config(source.state, config.to_dict()):
        raise UsageError(f"{shown(final)}: records another config than the study's run {shown(run_dir)} (replaced since "
                         "the study took it up); run the same command again to train that model anew")
    model, dataset = load_trained(source, device, host=host)[0], build_dataset(config, host)
    check_data_tokenizer(source, config, dataset)
    return model, dataset, device


def as_built(run: dict[str, Any], name: str, recipe: str, task: str) -> dict[str, Any]:
    """The config (as tables) the model of the study's run ``name`` is built from: ``run``, except
    that an ensemble (:func:`~deepseek_enterprise.study_recipes.is_ensemble`) is built with
    ``freeze_pretrained`` off: the same weights, and nothing trains it anyway (frozen, every
    parameter from ``model.pretrained``, it is refused as a model with nothing to train)."""
    if not is_ensemble(name, recipe, task):
        return run
    return {**run, "model": {**run["model"], "freeze_pretrained": False}}


def ensemble_row(config: Any, host: Any, *, calibrate: bool = False,
                 weights: dict[str, float] | None = None) -> dict[str, Any]:
    """The row of late fusion of fixed unimodal models
    (:func:`~deepseek_enterprise.study_recipes.is_ensemble`): the model ``config`` (made by
    :func:`as_built`) builds, as it starts, evaluated on CPU, no training: on the validation
    batches the trainer would use, and on the test split as every other row (``calibrate``: then
    calibrated, :func:`calibrate_row`; ``weights``: also with these fixed ``logit_weights``,
    :func:`weighted_figures`)."""
    from deepseek.bench.latency import machine_info
    from deepseek.training.build import build_dataset, build_model

    model = build_model(config, host=host).eval()
    data, cpu = build_dataset(config, host), next(model.parameters()).device
    row = {"parameters": sum(p.numel() for p in model.parameters()), "machine": machine_info(cpu),
           "test": split_metrics(model, data, cpu),
           "val_curve": [], "val": split_metrics(model, data, cpu, "val", limit=config.data.eval_batches),
           "missing": {m: split_metrics(model, data, cpu, "test", (m,))["test_accuracy"] for m in model.modalities}}
    if calibrate:
        calibrate_row(row, model, data, cpu, config)
    if weights is not None:
        row["weighted"] = weighted_figures(model, data, cpu, config, weights)
    return row


def weighted_figures(model: Any, data: Any, device: Any, config: Any, weights: dict[str, float]) -> dict[str, Any]:
    """``model``'s accuracy with ``weights`` as its ``logit_weights`` (``--eval-logit-weights``:
    fixed in advance, nothing fitted; they replace the model's own for these two evaluations, which
    it gets back after): on the validation batches the trainer uses and on the test split, as the
    row's own figures are measured."""
    from deepseek_enterprise.calibration import with_logit_weights

    own = dict(model.options.logit_weights)
    with_logit_weights(model, weights)
    try:
        return {"logit_weights": dict(weights),
                "val_accuracy": split_metrics(model, data, device, "val", limit=config.data.eval_batches)["val_accuracy"],
                "test_accuracy": split_metrics(model, data, device)["test_accuracy"]}
    finally:
        with_logit_weights(model, own)


def calibrate_row(row: dict[str, Any], model: Any, data: Any, device: Any, config: Any) -> None:
    """Fit ``model``'s ``logit_weights`` on :data:`CALIBRATION_BATCHES` batches of the ``blend``
    part, keep them on the model, and replace the row's val, test and missing-modality figures by
    the calibrated model's; the uncalibrated ones move to ``before_calibration``."""
    from deepseek_enterprise.calibration import (
        calibration_batches,
        fit_logit_weights,
        with_logit_weights,
    )

    limit = config.data.eval_batches
    row["before_calibration"] = {"test_accuracy": row["test"]["test_accuracy"], "missing": row["missing"],
                                 "val_accuracy": split_metrics(model, data, device, "val", limit=limit)["val_accuracy"]}
    batches = calibration_batches(data.options, part="blend", batches=CALIBRATION_BATCHES,
                                  batch_size=data.batch_size, seed=config.train.seed)
    row["logit_weights"] = fit_logit_weights(model, batches, device)
    with_logit_weights(model, row["logit_weights"])
    row["test"] = split_metrics(model, data, device)
    row["val"] = split_metrics(model, data, device, "val", limit=limit)
    row["missing"] = {m: split_metrics(model, data, device, "test", (m,))["test_accuracy"] for m in model.modalities}


def latency(module: Any, data: Any, device: Any, runs: int = 100) -> dict[str, float]:
    """Batch-1 inference of the trained ``module`` on a test sample of dataset ``data``: p50/p90
    milliseconds, peak GPU memory of the calls (CUDA) and the process's peak resident memory (its
    whole run so far)."""
    import torch

    module = module.eval()
    from deepseek.data.batch import move_to

    batch = move_to(data.split_batches("test", 1)[0], device)
    one = {k: ({m: v[:1] for m, v in val.items()} if isinstance(val, dict) else val[:1]) for k, val in batch.items()}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with torch.no_grad():
        for i in range(runs + 10):
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            module(**one)
            if cuda:
                torch.cuda.synchronize(device)
            if i >= 10:
                times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p90_ms": times[int(len(times) * 0.9)],
            "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "parameters": sum(p.numel() for p in module.parameters()), "device": str(device)}


def run_study(tasks: list[str], seeds: list[int], configs: list[str], steps: int, *, batch: int, lr: float,
              device: str, out: Path, host: Any = None, recipe: str = DEFAULT_RECIPE,
              unimodal_runs: Path | None = None, eval_size: int | None = None,
              base: dict[str, Any] | None = None, base_file: Path | None = None,
              eval_logit_weights: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Train and test every (task, config, seed); write ``out/results.jsonl`` as it goes.
    ``base``: the tables of config file ``base_file`` every run's config starts from
    (:mod:`deepseek_enterprise.study_base`);
    ``unimodal_runs``: the ``runs`` folder of an earlier study of the same seeds, whose unimodal
    run folders (``<task>-<modality>-s<seed>``) fused models start from instead of ones trained here;
    ``eval_size``: samples in every run's validation and test sets (``None``: the dataset's default);
    ``eval_logit_weights``: fixed ``logit_weights`` every fused model is also evaluated with (its
    row's ``weighted``, :func:`weighted_figures`)."""
    from deepseek.arguments import command_terms
    from deepseek.bench.latency import machine_info
    from deepseek.config.load import config_from_dict
    from deepseek.errors import UsageError
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint
    from deepseek.training.metrics import read_metrics
    from deepseek.training.trainer import Trainer
    from deepseek_enterprise.study_base import check_run, over_base, unused_keys
    from deepseek_enterprise.study_folder import (
        TERMS,
        StudyStopped,
        check_folder,
        settings_of,
        start_folder,
        take_up,
    )
    from deepseek_enterprise.study_report import check_row

    settings = settings_of(steps, batch, lr, device, recipe, eval_size, unimodal_runs, base, eval_logit_weights)
    check_folder(out, settings)  # another study's folder: refused before anything is written
    given: dict[tuple[str, int], dict[str, str]] = {}
    if unimodal_runs is not None:
        for task in tasks:
            for seed in seeds:
                needed = {m for c in configs if starts_from_unimodal(c, recipe, task) for m in model_of(c)[0]}
                given[task, seed] = {m: str(unimodal_runs / f"{task}-{m}-s{seed}") for m in MODALITY_ORDER if m in needed}
                gone = [p for p in given[task, seed].values() if not Path(p).is_dir()]
                if gone:
                    raise UsageError(f"--unimodal-runs: {gone[0]} is not a folder; pass the runs folder of a study of "
                                     f"the same seeds with --config vision --config audio --config text")
                for m, folder in given[task, seed].items():
                    check_unimodal_run(Path(folder), train_sources(m, recipe, task), recipe, m)
    # every run's config is checked before anything is written; with --unimodal-runs, each seed's
    for task, seed in [(t, s) for t in tasks for s in (seeds if unimodal_runs is not None else seeds[:1])]:
        sources = given.get((task, seed), {})
        for name in run_order(configs, recipe, task, given=unimodal_runs is not None):
            if starts_from_unimodal(name, recipe, task) and not sources:
                continue  # its sources are the unimodal runs trained first, checked here themselves
            mine = {m: sources[m] for m in model_of(name)[0] if m in sources}
            run = over_base(study_config(task, name, seed, steps, batch=batch, lr=lr, device=device,
                                         runs_dir=str(out / "runs"), recipe=recipe, sources=mine,
                                         eval_size=eval_size, host=host), base, host)
            if base is None and not mine:
                config_from_dict(run, host=host)
            else:  # built on meta, here: the file's nested tables (encoders), and the unimodal runs it starts
                # from against them (their encoder keys and weight shapes, read from trainer.json and headers);
                # an ensemble as it is built to be evaluated
                check_run(as_built(run, name, recipe, task), host,
                          f"{base_file or '--unimodal-runs'} (as the study's {task}-{name}-s{seed} run)", build=True)
    if base is not None and unused_keys(base, host):  # said once the study is sure to start
        import click

        click.echo(f"note: {shown(base_file)}: the study sets {', '.join(unused_keys(base, host))} itself in every run; the "
                   "file's values of those are not used", err=True)
    with start_folder(out, settings, host) as done:  # a stopped study continues: the models with results are kept
        rows = list(done.values())
        for task in tasks:
            for seed in seeds:
                sources = dict(given.get((task, seed), {}))  # modality -> this seed's unimodal run folder
                for name in run_order(configs, recipe, task, given=unimodal_runs is not None):
                    mine = {m: sources[m] for m in model_of(name)[0] if m in sources}
                    run_dir = out / "runs" / f"{task}-{name}-s{seed}"
                    if (task, name, seed) in done:
                        if len(model_of(name)[0]) == 1 and not is_ensemble(name, recipe, task):
                            sources[model_of(name)[0][0]] = str(run_dir)
                        continue
                    run = over_base(study_config(task, name, seed, steps, batch=batch, lr=lr, device=device,
                                                 runs_dir=str(out / "runs"), recipe=recipe, sources=mine,
                                                 eval_size=eval_size, host=host), base, host)
                    config = config_from_dict(as_built(run, name, recipe, task), host=host)
                    start = time.perf_counter()
                    part = {} if config.data.options.train_sources == "all" else {
                        "train_sources": config.data.options.train_sources}
                    if is_ensemble(name, recipe, task):
                        fitted = ensemble_row(config, host, calibrate=(recipe, task) in CALIBRATED,
                                              weights=eval_logit_weights)
                        row = {"task": task, "config": name, "seed": seed, "steps": 0, "recipe": recipe, **fitted,
                               "seconds": time.perf_counter() - start, "started_from": mine, **part}
                        rows.append(row)
                        with (out / "results.jsonl").open("a", encoding="utf-8") as fh:
                            fh.write(json.dumps(row) + "\n")
                        continue
                    how = take_up(run_dir, steps, config.to_dict())  # train, resume, or only test a finished run
                    if how == "test":
                        with command_terms(TERMS):
                            module, data, on = finished_model(run_dir, config, host)
                        made, params = run_dir, sum(p.numel() for p in module.parameters())
                        # the step its training reached (before --steps where early stopping ended it)
                        reached = int(read_trainer_state(resolve_checkpoint(run_dir))["step"])
                    else:
                        with command_terms(TERMS):  # its lines name --out, not Trainer's run_dir= / resume=
                            trainer = Trainer(config, quiet=True, host=host, resume=run_dir if how == "resume" else None)
                            result = trainer.fit()
                        if result.stopped_by is not None:  # SIGTERM / SIGUSR1: the study stops with the run
                            raise StudyStopped(f"stopped: {result.stopped_by} after step {result.step} of {shown(run_dir)}; "
                                               f"run the same command again to continue the study in {shown(out)}")
                        module, data, on = trainer.strategy.eval_module, trainer.dataset, trainer.strategy.device
                        made, params = trainer.run_dir, sum(p.numel() for p in trainer.strategy.unwrapped_model().parameters())
                        reached = result.step
                    if len(model_of(name)[0]) == 1:
                        sources[model_of(name)[0][0]] = str(made)
                    row: dict[str, Any] = {"task": task, "config": name, "seed": seed, "steps": reached, "parameters": params,
                                           "recipe": recipe if recipe_keys(name, recipe, task, host=host) else None,
                                           "seconds": time.perf_counter() - start, "machine": machine_info(on),
                                           "test": split_metrics(module, data, on), **part}
                    if starts_from_unimodal(name, recipe, task):
                        row["started_from"] = mine
                    evals = [r for r in read_metrics(made / "metrics.jsonl") if "val_accuracy" in r]
                    row["val_curve"] = [(r["step"], r.get("val_accuracy")) for r in evals]
                    if evals:  # the last evaluation on the val split: fused accuracy and each modality's own read
                        row["val"] = {k: v for k, v in evals[-1].items() if k.startswith("val_accuracy")}
                    modalities = model_of(name)[0]
                    if len(modalities) > 1:
                        row["missing"] = {m: split_metrics(module, data, on, "test", (m,))["test_accuracy"]
                                          for m in modalities}
                        if (recipe, task) in CALIBRATED:
                            calibrate_row(row, module, data, on, config)
                        if eval_logit_weights is not None:
                            row["weighted"] = weighted_figures(module, data, on, config, eval_logit_weights)
                        row["latency"] = latency(module, data, on)  # every fused model the study trains
                    problem = check_row(json.loads(json.dumps(row)))  # what is written is read back by the same rule
                    if problem is not None:  # only the run's metrics.jsonl is read from disk here: edited since
                        raise UsageError(f"{run_dir / 'metrics.jsonl'}: its evaluations give a results line the "
                                         f"study could not read back ({problem}); remove {run_dir} to train that "
                                         "model again")
                    rows.append(row)
                    with (out / "results.jsonl").open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
    return rows


def check_unimodal_run(folder: Path, part: str, recipe: str, modality: str) -> None:
    """A one-line :class:`UsageError` unless ``folder`` holds a unimodal run of ``modality``
    trained on the ``part`` of the training split that ``recipe`` trains its unimodal models on
    (``--unimodal-runs``)."""
    from deepseek.errors import UsageError
    from deepseek.training.checkpoint import read_trainer_state, resolve_checkpoint

    again = (f"pass the runs folder of a study with --recipe {recipe} --config vision --config audio "
             "--config text")
    try:
        config = read_trainer_state(resolve_checkpoint(folder)).get("config") or {}
    except UsageError as exc:
        raise UsageError(f"--unimodal-runs: {str(exc).partition('; ')[0]}; {again}") from None
    modalities = (config.get("model") or {}).get("modalities")
    if modalities != [modality]:
        raise UsageError(f"--unimodal-runs: {folder} is a run of modalities {modalities}, not ['{modality}']; {again}")
    used = (config.get("data") or {}).get("train_sources", "all")
    if used != part:
        raise UsageError(f"--unimodal-runs: {folder} trained on data.train_sources = {used!r}, recipe {recipe} starts "
                         f"from unimodal models trained on {part!r}; {again}")
