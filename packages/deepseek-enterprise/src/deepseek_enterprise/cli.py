"""``deepseek multimodal``: the fusion study (train, test, table) and the evaluation of a trained
multimodal classifier (``eval``) of the enterprise edition.

Nothing here imports torch at module level (``deepseek --help`` stays fast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from deepseek.cli.params import MAX_REPEATS, PATH, SEED, Device, FiniteFloat, count
from deepseek.errors import UsageError
from deepseek_enterprise.cli_params import PATH_ARG

DEFAULTS = {"steps": 1500, "batch": 64, "lr": 2e-3, "device": "auto", "eval_size": None}
"""The study's settings where neither its option nor CONFIG.toml gives one (``eval_size``: the
dataset's)."""


@click.group("multimodal")
def multimodal() -> None:
    """Multimodal fusion: the study behind BENCHMARKS.md's fusion tables."""


class ModelNames(click.ParamType):
    """``--config``'s model names: a unimodal model or a registered fusion method's name
    (``study_recipes.check_models`` checks them against the registry once the host is known); a
    config file given there is pointed to its place (the argument CONFIG.toml)."""

    name = "model"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.endswith(".toml"):
            self.fail(f"{value!r}: --config names a model of the study (vision, audio, text or a registered fusion "
                      "method); give a config file as the argument: deepseek multimodal study CONFIG.toml ...",
                      param, ctx)
        return value


@multimodal.command("study")
@click.argument("config_file", required=False, type=PATH_ARG, metavar="[CONFIG.toml]")
@click.option("--task", "tasks", multiple=True, type=click.Choice(["redundant", "complementary"]),
              help="Tasks to run (repeatable; default both).")
@click.option("--seed", "seeds", multiple=True, type=SEED, help="Seeds (repeatable; default 0 1 2).")
@click.option("--config", "configs", multiple=True,
              type=ModelNames(), metavar="NAME",
              help="Models to train (repeatable): vision, audio, text (unimodal) or a registered fusion method "
                   "(late, concat, cross_attention or a plugin's; 'deepseek plugins list'), fusing every modality "
                   "[default: the unimodal ones, late, concat and cross_attention].")
@click.option("--steps", type=count(1, MAX_REPEATS), default=None,
              help=f"Optimizer steps per run [default: CONFIG.toml's train.max_steps, else {DEFAULTS['steps']}].")
@click.option("--batch", type=count(), default=None,
              help=f"Global batch [default: CONFIG.toml's data.batch_size, else {DEFAULTS['batch']}].")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True, max=1.0), default=None,
              help=f"Peak learning rate [default: CONFIG.toml's train.lr, else {DEFAULTS['lr']}].")
@click.option("--device", type=Device(), default=None,
              help=f"auto, cpu or cuda[:N] [default: CONFIG.toml's strategy.device, else {DEFAULTS['device']}].")
@click.option("--recipe", type=click.Choice(["joint", "aux", "pretrained", "frozen", "stacked", "stacked-residual",
                                            "calibrated", "balanced", "pretrained-balanced"]),
              default="joint", show_default=True,
              help="Fused models' recipe: aux = per-modality auxiliary losses and modality dropout; "
                   "joint = the same plus concat's and cross_attention's joint-prediction head; pretrained = joint "
                   "starting (redundant task) from the seed's unimodal models, trained first; frozen = pretrained "
                   "with those parts fixed; stacked = frozen with the unimodal models trained on the fit part of "
                   "the training split and the fused models on its blend part; stacked-residual = stacked whose "
                   "fused logits are the ensemble's plus a learned correction starting at zero; calibrated = frozen "
                   "with every model trained on the fit part, then each fused model's logit_weights fitted on the "
                   "blend part; balanced = joint with on-the-fly gradient modulation (model.gradient_modulation: the most "
                   "confident modality's encoder learns slower); pretrained-balanced = pretrained with it.")
@click.option("--unimodal-runs", type=PATH_ARG, default=None,
              metavar="DIR", help="With a recipe that starts from unimodal models (pretrained, frozen, stacked, "
                                  "stacked-residual, calibrated, pretrained-balanced): the runs folder of an earlier study of the same seeds and recipe "
                                  "whose unimodal runs the fused models start from (instead of training them here).")
@click.option("--eval-size", type=count(), default=None, metavar="N",
              help="Samples in every run's validation and test sets (data.eval_size; default CONFIG.toml's, else "
                   "the dataset's, 1024).")
@click.option("--eval-logit-weights", default=None, metavar="NAME=X,...",
              help="Also evaluate every fused model (late, concat, cross_attention, a plugin's fusion method) on the val and test splits with "
                   "these [model] logit_weights, fixed in advance (e.g. fused=1,vision=1,audio=1,text=1; names: fused "
                   "and the modalities); its results line gets them as 'weighted' beside its own figures.")
@click.option("--out", type=PATH_ARG, required=True,
              help="Folder for runs and results.jsonl (created if missing).")
def study(config_file: Path | None, tasks: tuple[str, ...], seeds: tuple[int, ...], configs: tuple[str, ...],
          steps: int | None, batch: int | None, lr: float | None, device: str | None, recipe: str,
          unimodal_runs: Path | None, eval_size: int | None, eval_logit_weights: str | None,
          out: Path) -> int | None:
    """Train every model per task and seed, test each once on the held-out split, print the tables.
    CONFIG.toml (a multimodal config, e.g. examples/multimodal/digits.toml): the base of every run's
    config (docs/multimodal.md)."""
    from deepseek.cli.context import command_host
    from deepseek.paths import check_output
    from deepseek_enterprise.study import run_study
    from deepseek_enterprise.study_base import option_names, option_values, read_base
    from deepseek_enterprise.study_recipes import CONFIGS, PRETRAINED, check_models
    from deepseek_enterprise.study_report import table

    for option, values in (("--task", tasks), ("--seed", seeds), ("--config", configs)):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:  # the second run of a name found the first's run folder and failed half-way through the study
            raise UsageError(f"{option} {', '.join(twice)} given twice; give each once")
    check_models(configs, command_host())
    weights = None if eval_logit_weights is None else study_logit_weights(eval_logit_weights, configs or tuple(CONFIGS))
    given = {"steps": steps, "batch": batch, "lr": lr, "device": device, "eval_size": eval_size}
    base = None if config_file is None else read_base(config_file, command_host(), given, DEFAULTS)
    chosen = option_values(base, given, DEFAULTS)
    steps, batch, lr, device, eval_size = (chosen[k] for k in ("steps", "batch", "lr", "device", "eval_size"))
    from deepseek_enterprise.digits.dataset import DigitsOptions, refuse_batch_over_memory

    # every run's batch, as the dataset would refuse it when the first run starts (after study.json)
    named = option_names(base, config_file, given)
    refuse_batch_over_memory(DigitsOptions(), batch, named["batch"], named["batch"])
    check_output(out, where="--out", folder=True, file_name="study", host=command_host(), not_a_run=True)
    if unimodal_runs is not None and not unimodal_runs.is_dir():
        from deepseek.paths import broken_link

        what = "is not a folder" if unimodal_runs.exists() else broken_link(unimodal_runs) or "does not exist"
        raise UsageError(f"--unimodal-runs: {unimodal_runs} {what}; pass the runs folder of an earlier study")
    starting = sorted({r for r, _ in PRETRAINED})
    if unimodal_runs is not None and recipe not in starting:
        raise UsageError(f"--unimodal-runs: recipe {recipe} does not start from unimodal models; use it with "
                         f"--recipe {', '.join(starting)}, or leave it out")
    if eval_size is not None and eval_size < batch:
        raise UsageError(f"{named['eval_size']} {eval_size}: fewer samples than one batch ({named['batch']} {batch}); "
                         f"give at least {batch}")
    from deepseek_enterprise.study_folder import StudyStopped

    try:
        rows = run_study(list(tasks or ("redundant", "complementary")), list(seeds or (0, 1, 2)),
                         list(configs or CONFIGS), steps, batch=batch, lr=lr, device=device, out=out,
                         host=command_host(), recipe=recipe, unimodal_runs=unimodal_runs, eval_size=eval_size,
                         base=base, base_file=config_file, eval_logit_weights=weights)
    except StudyStopped as stopped:
        from deepseek.training.preemption import EXIT_PREEMPTED

        click.echo(str(stopped), err=True)
        return EXIT_PREEMPTED
    click.echo(table(rows))
    return None


def study_logit_weights(text: str, configs: tuple[str, ...]) -> dict[str, float]:
    """``--eval-logit-weights`` as the weights the study evaluates its fused models with (one-line
    :class:`UsageError` otherwise: bad syntax or numbers, a name other than ``fused`` and the
    modalities, or no fused model among ``configs`` to evaluate)."""
    from deepseek_enterprise.report import parse_logit_weights
    from deepseek_enterprise.study_recipes import CONFIGS, MODALITY_ORDER, fused_configs

    weights = parse_logit_weights(text, where="--eval-logit-weights")
    unknown = [k for k in weights if k != "fused" and k not in MODALITY_ORDER]
    if unknown:
        raise UsageError(f"--eval-logit-weights: {unknown[0]} is not 'fused' or a modality of the study's fused models "
                         f"({', '.join(MODALITY_ORDER)}); name those only")
    if not fused_configs(configs):
        raise UsageError(f"--eval-logit-weights: no fused model among --config {' '.join(configs)} to evaluate with "
                         f"them; add one of {', '.join(fused_configs(tuple(CONFIGS)))}, or leave it out")
    return weights


@multimodal.command("table")
@click.argument("files", nargs=-1, required=True, type=PATH_ARG)
def table_command(files: tuple[Path, ...]) -> None:
    """Merge results.jsonl files of studies into the tables."""
    from deepseek_enterprise.study_report import read_results, table

    rows = []
    seen: dict[tuple[str, str, int], str] = {}
    for path in files:
        rows += [row for _, row in read_results(path, "pass results.jsonl files of 'study'", seen)[0]]
    if not rows:
        raise UsageError(f"{', '.join(map(str, files))}: no results lines; pass results.jsonl files of 'study'")
    click.echo(table(rows))


@multimodal.command("eval")
@click.option("--checkpoint", required=True, type=PATH, metavar="PATH", help="Run folder or checkpoint folder.")
@click.option("--split", type=click.Choice(["val", "test"]), default="val", show_default=True,
              help="Which held-out split to read (test: only for final figures).")
@click.option("--missing", default="", metavar="NAMES", help="Modalities to hide, comma-separated (e.g. audio,text).")
@click.option("--confusion", type=PATH_ARG, default=None, metavar="PNG",
              help="Also draw the confusion matrix to this PNG file.")
@click.option("--logit-weights", default=None, metavar="NAME=X,...",
              help="Evaluate with these [model] logit_weights instead of the run's (e.g. fused=0.13,audio=0.26; "
                   "names: fused and the model's modalities; docs/multimodal.md, calibrated output).")
@click.option("--device", type=Device(), default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_command(checkpoint: str, split: str, missing: str, confusion: Path | None, logit_weights: str | None,
                 device: str, as_json: bool) -> None:
    """Accuracy of a trained multimodal classifier on a split, per modality, with a confusion matrix."""
    from deepseek.cli.context import command_host
    from deepseek.errors import shown
    from deepseek.names import split_names
    from deepseek.paths import check_output, created_note, make_folders
    from deepseek_enterprise.report import (
        format_report,
        parse_logit_weights,
        plot_confusion,
        split_report,
    )

    names = split_names(missing, where="--missing") if missing else ()
    weights = parse_logit_weights(logit_weights) if logit_weights is not None else None
    folders = []
    if confusion is not None:
        if confusion.suffix.lower() != ".png":
            raise UsageError(f"--confusion: {confusion} must be a .png file; give a name ending in .png")
        folders = check_output(confusion, where="--confusion", folder=False, file_name="confusion.png",
                               host=command_host())
    report = split_report(checkpoint, split=split, missing=names, device=device, host=command_host(),
                          logit_weights=weights)
    if confusion is not None:
        make_folders(folders, where="--confusion")
        plot_confusion(report, confusion)
    click.echo(json.dumps(report) if as_json else format_report(report))
    if confusion is not None:  # on stderr beside --json, whose stdout is the report alone
        click.echo(f"wrote {shown(confusion)}{created_note(folders)}", err=as_json)
