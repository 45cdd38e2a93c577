"""Whole-set metrics under data parallelism (``_totals_fit.py``, 2 processes): each rank sums the
confusion matrices of its own rows, the strategy's ``reduce_sum`` adds the ranks' sums, and the
model's macro F1 over the whole validation set equals what one process reports and what
``deepseek.evaluate`` computes from the checkpoint (``rows``: every validation row counted once,
not once per rank)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prohelpers import run_torchrun
from _totals_fit import VAL_ROWS, Classifier, points

import deepseek

PROBE = Path(__file__).with_name("_totals_fit.py")
STRATEGIES = ("ddp", "fsdp", "deepspeed-2", "deepspeed-3")
SHORT = ("ddp+81", "fsdp+81", "deepspeed-3+81")  # the last validation batch holds 1 row: the second rank has none of it
ONE_ROW = ("ddp+1",)  # one validation row: the second rank has no row at all, yet takes part in reduce_sum


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("totals")
    run_torchrun([str(PROBE), str(out), *STRATEGIES, *SHORT, *ONE_ROW, "ddp-unpadded", "ddp-undeclared"],
                 timeout=600)
    return out


def fit_single(out: Path, rows: int) -> dict:
    config = {"train": {"max_steps": 8, "lr": 1e-2, "warmup_steps": 0, "eval_interval": 4},
              "data": {"eval_batches": 6}, "precision": {"dtype": "fp32"}, "logging": {"progress": False, "plot": False}}
    result = deepseek.fit(Classifier, points(256, 0), val_data=points(rows, 1), names=("x", "label"), batch_size=16,
                          shuffle=False, strategy="single", config=config, quiet=True, run_dir=out / f"single-{rows}")
    return {"val": result.val_metrics, "losses": result.losses, "dir": out / f"single-{rows}"}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    out = tmp_path_factory.mktemp("totals_single")
    return {rows: fit_single(out, rows) for rows in (VAL_ROWS, 81, 1)}


@pytest.mark.parametrize("strategy", STRATEGIES + SHORT + ONE_ROW)
def test_f1_over_the_whole_set_matches_one_process(runs: Path, single: dict, strategy: str) -> None:
    rows = int(strategy.partition("+")[2] or VAL_ROWS)
    result = json.loads((runs / f"{strategy}.json").read_text())
    # every validation row counted once: 5 batches of 16 and the last, shorter one, over the 2 ranks' shares
    # (a rank's stand-in row, evaluated where it has none, adds zeros)
    assert result["val"]["val_rows"] == rows
    assert single[rows]["val"]["val_rows"] == rows
    assert result["val"]["val_macro_f1"] == pytest.approx(single[rows]["val"]["val_macro_f1"], abs=1e-6)
    # the mean loss weighs the short batch by its rows whatever the split (rank 1's stand-in row weighs 0)
    assert result["val"]["val_loss"] == pytest.approx(single[rows]["val"]["val_loss"], abs=1e-6)
    assert result["losses"] == pytest.approx(single[rows]["losses"], abs=1e-5)
    values = deepseek.evaluate(Classifier(), points(rows, 1), names=("x", "label"), checkpoint=runs / strategy)
    assert values["val_macro_f1"] == pytest.approx(result["val"]["val_macro_f1"], abs=1e-6)
    assert values["val_loss"] == pytest.approx(result["val"]["val_loss"], abs=1e-6)


def test_totals_whose_shape_differs_between_ranks_are_one_line_on_every_rank(runs: Path) -> None:
    # Unpadded's confusion matrix is 1x1 on rank 0 (a row of class 0) and 3x3 on rank 1 (class 2):
    # both ranks refuse it at the check of the first validation batch, before the run folder is
    # written, instead of waiting for each other or summing tensors that do not match
    lines = [(runs / f"ddp-unpadded-{rank}.txt").read_text() for rank in (0, 1)]
    assert lines[0].startswith("model 'script': output['totals'] are 'confusion' of shape (1, 1) on rank 0 and "
                               "differ on another rank; ")
    assert lines[1].startswith("model 'script': output['totals'] are 'confusion' of shape (3, 3) on rank 1 and "
                               "'confusion' of shape (1, 1) on rank 0; ")
    assert all(line.endswith("(pad per-class counts to the number of classes)") and "\n" not in line for line in lines)
    assert not (runs / "ddp-unpadded").exists()


def test_totals_of_a_model_without_metrics_from_totals_are_refused_by_the_rank_with_a_stand_in_row_too(
        runs: Path) -> None:
    # one validation row: the second rank evaluates only a stand-in row, whose totals are checked as
    # any batch's (not skipped), so it refuses the model with the first rank's line
    lines = [(runs / f"ddp-undeclared-{rank}.txt").read_text() for rank in (0, 1)]
    assert lines[0] == lines[1]
    assert lines[0].startswith("model 'script': output['totals'] is returned, but the model does not define "
                               "metrics_from_totals")
    assert not (runs / "ddp-undeclared").exists()
